"""Which caption words a tiny-world teacher reads, per noise level (tinyworld/caption_probe.py).

    python tools/probe_captions.py --arch flux --out work_dirs/probe_flux
    python tools/probe_captions.py --arch flux \\
        --transformer checkpoints/tiny-flux-stages/03_teacher_high_noise --out work_dirs/probe_03
    python tools/probe_captions.py --arch flux --renoise --out work_dirs/renoise_flux

For held-out one-object scenes and fixed noise, the velocity error on the objects with the true
caption and with captions that change one attribute (colour, shape, size, position), another
scene's caption, or the empty prompt. A gap near 0 % means the model ignores that word at that
noise level. Writes results.json, gaps.md and gaps.png under --out.

--renoise: the scenes noised to each --sigmas level are finished by the teacher's sampler (FLUX at
the tiny preset's embedded guidance, Qwen-Image with true CFG 4.0, as the tiny stacks sample) with
the true and the edited captions, and the attribute evaluator reads the samples: the level below
which an attribute keeps the noised image's value instead of the caption's is where the teacher
decides it. Writes renoise.json and renoise.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import arcflow.tinyworld.presets  # noqa: F401  (registers --preset tiny)
from arcflow.errors import run_cli
from arcflow.pipelines import loading

if TYPE_CHECKING:
    from arcflow.tinyworld.flow_matching import FlowMatchingTrainer

# The tiny presets of inference_{flux,qwen}.py: stack folders and prompt lengths.
ROOT = Path(__file__).resolve().parents[1]
# The tiny preset's checkpoints are the repository's, whatever the current folder.
SPECS = loading.specs_under(ROOT)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arch", choices=sorted(SPECS), default="flux")
    parser.add_argument("--model", help="stack folder: text side and VAE (default: the tiny one)")
    parser.add_argument(
        "--transformer", help="folder whose transformer/ is probed (default: the stack's)"
    )
    parser.add_argument(
        "--guidance",
        type=float,
        help="FLUX: the embedded guidance (default 1.0, the conditional velocity; with --renoise "
        "the tiny preset's); Qwen-Image with --renoise: the true-CFG scale (default 4.0)",
    )
    parser.add_argument(
        "--renoise",
        action="store_true",
        help="finish re-noised scenes with the teacher's sampler and read them with the evaluator",
    )
    parser.add_argument("--steps", type=int, default=50, help="--renoise: the sampler's grid")
    parser.add_argument(
        "--evaluator", default="checkpoints/tiny-evaluator", help="--renoise: attribute evaluator"
    )
    parser.add_argument("--scenes", type=int, default=128, help="held-out scenes")
    parser.add_argument("--num-objects", type=int, choices=[1, 2], default=1)
    parser.add_argument("--sigmas", default="0.3,0.5,0.7,0.9", help="comma-separated, in (0, 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    return parser


def parse_sigmas(text: str, parser: argparse.ArgumentParser) -> list[float]:
    try:
        sigmas = [float(s) for s in text.split(",")]
    except ValueError:
        parser.error(f"--sigmas must be comma-separated numbers, got {text!r}")
    if not all(0 < s < 1 for s in sigmas):
        parser.error(f"--sigmas must lie in (0, 1), got {sigmas}")
    return sigmas


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from arcflow.tinyworld.caption_probe import VARIANTS

    sigmas = sorted(results)
    fig, ax = plt.subplots(figsize=(6, 4))
    for variant in VARIANTS[1:]:
        ax.plot(sigmas, [100 * results[s][variant]["gap"] for s in sigmas], "o-", label=variant)
    ax.axhline(0.0, color="gray", lw=0.8)
    ax.set_xlabel("noise level sigma")
    ax.set_ylabel("loss increase over the true caption (%)")
    ax.set_title("What the caption's words change in the teacher's velocity")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def renoise(
    trainer: FlowMatchingTrainer,
    cfg_scale: float | None,
    sigmas: list[float],
    args: argparse.Namespace,
) -> None:
    from arcflow.tinyworld.caption_probe import GuidedTeacher, renoise_probe, renoise_table
    from arcflow.tinyworld.evaluator import AttributeEvaluator

    teacher = GuidedTeacher(trainer, cfg_scale)
    evaluator = AttributeEvaluator.from_pretrained(args.evaluator)
    results = renoise_probe(
        teacher, evaluator, args.scenes, sigmas, args.seed, args.num_objects, args.steps
    )
    (args.out / "renoise.json").write_text(json.dumps({str(k): v for k, v in results.items()}))
    table = renoise_table(results)
    (args.out / "renoise.md").write_text(table + "\n")
    print(table)
    print(f"wrote {args.out}/renoise.json, renoise.md")


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    sigmas = parse_sigmas(args.sigmas, parser)
    model = args.model or SPECS[args.arch].preset_folder("tiny", "models")
    transformer = args.transformer or model
    needed = [(model, "vae/config.json"), (transformer, "transformer/config.json")]
    if args.renoise:
        needed.append((args.evaluator, "config.json"))
    for folder, what in needed:
        if not (Path(folder) / what).exists():
            parser.error(f"{folder}/{what} not found: build or export it first")
    if args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")

    from arcflow.tinyworld.flow_matching import FlowMatchingTrainer

    defaults = loading.sampling_defaults(model)
    flux = args.arch == "flux"
    guidance = args.guidance
    if flux and guidance is None:
        guidance = defaults.get("guidance_scale") if args.renoise else 1.0
    trainer = FlowMatchingTrainer(
        args.arch,
        transformer=dict(from_pretrained=transformer, subfolder="transformer"),
        pretrained=model,
        max_sequence_length=defaults.get(
            "max_sequence_length", loading.RELEASED_MAX_SEQUENCE_LENGTH
        ),
        guidance_scale=guidance if flux else None,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    if args.renoise:
        renoise(trainer, None if flux else (guidance or 4.0), sigmas, args)
        return
    from arcflow.tinyworld.caption_probe import gap_table, probe_captions

    results = probe_captions(trainer, args.scenes, sigmas, args.seed, args.num_objects)
    (args.out / "results.json").write_text(json.dumps({str(k): v for k, v in results.items()}))
    table = gap_table(results)
    (args.out / "gaps.md").write_text(table + "\n")
    plot(results, args.out / "gaps.png")
    print(table)
    print(f"wrote {args.out}/results.json, gaps.md, gaps.png")


if __name__ == "__main__":
    sys.exit(run_cli(main))
