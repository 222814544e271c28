"""Measure a tiny-world stack: VAE reconstruction, teacher and student caption match.

    python tools/evaluate_tiny_world.py --arch flux --stack checkpoints/tiny-flux \
        --adapter checkpoints/tiny-flux-arcflow --baseline checkpoints/tiny-flux-linear

Caption match (``*_match``: the image shows exactly its caption; also per attribute) is the
attribute evaluator's (checkpoints/tiny-evaluator/) on held-out prompts, one
image per prompt from a per-prompt seed: the teacher with 50 Euler steps at its released guidance
(FLUX: embedded 3.5; Qwen-Image: true CFG 4.0), students with 2 NFE. Every sampler is the project's
one sampling loop (``arcflow.pipelines.sampling``). Prints a JSON report (``--out`` also writes it).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from arcflow.data.scenes import heldout_prompts, render_batch
from arcflow.evaluation.attributes import AttributeEvaluator
from arcflow.evaluation.metrics import psnr
from arcflow.models.adapter_format import load_arcflow_adapter
from arcflow.models.flow_matching import load_vae
from arcflow.models.loading import load_base_transformer
from arcflow.models.student import ArcFlowStudent
from arcflow.models.text_encoders import PromptEncoder
from arcflow.models.vae import LatentCodec
from arcflow.pipelines.sampling import make_noise, sample_student, sample_teacher

MAX_SEQUENCE_LENGTH = {"flux": 32, "qwen_image": 64}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", choices=["flux", "qwen_image"], required=True)
    parser.add_argument("--stack", required=True, help="the diffusers folder (teacher, VAE, text)")
    parser.add_argument("--adapter", help="ArcFlow adapter folder (published format)")
    parser.add_argument("--baseline", help="linear-shortcut (K = 1) adapter folder")
    parser.add_argument("--evaluator", default="checkpoints/tiny-evaluator")
    parser.add_argument("--num-prompts", type=int, default=200, help="per object count")
    parser.add_argument("--teacher-steps", type=int, default=50)
    parser.add_argument(
        "--teacher-guidance", type=float, help="default: the released one (3.5 embedded / CFG 4)"
    )
    parser.add_argument("--nfe", type=int, default=2)
    parser.add_argument("--no-teacher", action="store_true", help="skip the 50-step teacher")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="also write the JSON report here")
    return parser.parse_args()


@torch.no_grad()
def vae_scores(
    codec: LatentCodec, evaluator: AttributeEvaluator, num: int, seed: int
) -> dict[str, float]:
    """Encode -> decode (posterior mean) of held-out scenes: mean PSNR, and the caption match of
    the reconstructions (the ceiling of any generator decoded by this VAE)."""
    prompts, scenes = zip(*heldout_prompts(num, seed))
    images = render_batch(list(scenes))
    recon = torch.cat([codec.decode(codec.encode(x, sample=False)) for x in images.split(64)])
    recon = recon.float().clamp(-1, 1)
    return {
        "vae_psnr_db": float(psnr(recon, images, data_range=2.0).mean()),
        "vae_recon_match": evaluator.score(recon, list(prompts)).accuracy["match"],
    }


@torch.no_grad()
def caption_match(
    sample,
    encoder: PromptEncoder,
    codec: LatentCodec,
    evaluator: AttributeEvaluator,
    prompts: list[str],
    channels: int,
    latent_size: int,
    batch_size: int,
    seed: int,
) -> dict[str, float]:
    """The evaluator's accuracies on generated images: ``match`` (the fraction of images that show
    exactly their caption) and per stated attribute (colour, shape, size, position, count).

    ``sample(noise, cond)`` -> latents. Prompt ``i`` always gets the noise of seed ``seed + i``.
    """
    images = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        generators = [torch.Generator().manual_seed(seed + start + i) for i in range(len(chunk))]
        noise = make_noise(len(chunk), channels, latent_size, latent_size, generators)
        latents = sample(noise, encoder(chunk))
        images.append(codec.decode(latents).float().clamp(-1, 1))
    return evaluator.score(torch.cat(images), prompts).accuracy


def main() -> None:
    args = parse_args()
    torch.manual_seed(args.seed)
    codec = LatentCodec(load_vae(args.stack))
    encoder = PromptEncoder(args.arch, args.stack, MAX_SEQUENCE_LENGTH[args.arch])
    evaluator = AttributeEvaluator.from_pretrained(args.evaluator)

    def base():
        return load_base_transformer(args.stack, args.arch, torch.float32, "transformer")

    teacher = ArcFlowStudent(
        base(), args.arch, num_components=1, lora_rank=0, guidance_scale=args.teacher_guidance
    )
    channels = teacher.latent_channels
    latent_size = 64 // codec.spatial_factor
    prompts = {
        count: [p for p, _ in heldout_prompts(args.num_prompts, args.seed, num_objects=count)]
        for count in (1, 2)
    }
    report = vae_scores(codec, evaluator, 256, args.seed)

    def measure(name: str, sample) -> None:
        for count, texts in prompts.items():
            start = time.perf_counter()
            accuracy = caption_match(
                sample, encoder, codec, evaluator, texts, channels, latent_size,
                args.batch_size, args.seed,
            )  # fmt: skip
            report[f"{name}_seconds_{count}obj"] = time.perf_counter() - start
            report.update({f"{name}_{count}obj_{k}": v for k, v in accuracy.items()})

    if not args.no_teacher:
        measure("teacher", lambda x, c: sample_teacher(teacher, x, c, steps=args.teacher_steps))
    for name, path in (("arcflow", args.adapter), ("linear", args.baseline)):
        if path:
            student = load_arcflow_adapter(base(), path)
            measure(name, lambda x, c, s=student: sample_student(s, x, c, nfe=args.nfe))
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
