"""Re-train the whole tiny world from scratch on a CPU, in order, with the wall time of each stage.

    python tools/build_tiny_world.py                  # both stacks, FLUX first
    python tools/build_tiny_world.py --arch flux      # one stack
    python tools/build_tiny_world.py --resume         # skip stages whose output already exists

Per stack (every training stage is the same ``python tools/train.py CONFIG`` a user would run):

1. evaluator: ``tools/train_evaluator.py`` (once, if checkpoints/tiny-evaluator/ is missing);
2. text side: tokenizers, frozen tiny text encoders and scheduler -> checkpoints/tiny-<arch>/;
3. VAE: ``configs/tiny/vae_tiny_<arch>.py``; its EMA + measured latent scale -> <stack>/vae/;
   then ``vae_tiny_<arch>_decoder.py`` refines the decoder alone (the latents stay fixed);
4. teacher (``TEACHER_STAGES``): FLUX ``teacher_tiny_flux.py`` (stage A, conditional + text
   dropout, high noise), ``teacher_tiny_flux_detail.py`` (A2, the same at mid/low noise),
   ``teacher_tiny_flux_refine.py`` (A3, A2 continued after a learning-rate restart),
   ``teacher_tiny_flux_deep.py`` (A4, A3 grown to twice the single-stream blocks),
   ``teacher_tiny_flux_guidance.py`` (B, guidance distillation of A4),
   ``teacher_tiny_flux_stars.py`` (A5, A4 trained on with star scenes drawn more often),
   ``teacher_tiny_flux_sizes.py`` (A6, A5 with every caption stating sizes),
   ``teacher_tiny_flux_guidance_a6.py`` (B2, B trained on towards A6),
   ``teacher_tiny_flux_recondition.py`` (A7, conditional again from B2 at guidance 1),
   ``teacher_tiny_flux_guidance_a7.py`` (B3, guidance distillation of A7),
   ``teacher_tiny_flux_fresh.py`` (A8, A7 trained on on fresh scenes),
   ``teacher_tiny_flux_guidance_a8.py`` (B4, B3 trained on towards A8 on those scenes),
   ``teacher_tiny_flux_triangles.py`` (A9, A8 on new scenes with large triangles drawn more
   often) then ``teacher_tiny_flux_guidance_a9.py`` (B5, B4 trained on towards A9); Qwen
   ``teacher_tiny_qwen.py`` (A), ``teacher_tiny_qwen_detail.py`` (A2),
   ``teacher_tiny_qwen_refine.py`` (A3) then ``teacher_tiny_qwen_shapes.py`` (A4, A3 trained on
   with every caption stating sizes); the last stage's EMA -> <stack>/transformer/;
5. distillation: ``arcflow_tiny_<arch>.py`` (K = 16) -> checkpoints/tiny-<arch>-arcflow/ in the
   published adapter format, and the K = 1 baseline ``linear_tiny_<arch>.py`` ->
   checkpoints/tiny-<arch>-linear/ (measured, not shipped);
6. evaluation: ``tools/evaluate.py`` (N one-object and N two-object held-out prompts, the VAE's
   reconstructions as reference) -> work_dirs/tiny_world_<arch>/results.{json,md}, grid.png;
   then the bar measurement, the teacher and both 2-NFE students on ``--bar-prompts`` (1000)
   one-object prompts -> work_dirs/tiny_world_<arch>_bar/.

Training runs use one thread per process (``--threads``): on a small shared CPU, tiny models run
several times faster single-threaded than with threads fighting over cores.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from arcflow.errors import run_cli

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = Path("checkpoints")
EVALUATOR = CHECKPOINTS / "tiny-evaluator"
STACK_NAMES = {"flux": "flux", "qwen_image": "qwen"}
# (stage, config) in training order; each stage starts from an earlier one's export (its config
# names which).
TEACHER_STAGES = {
    "flux": (
        ("A", "teacher_tiny_flux"),
        ("A2", "teacher_tiny_flux_detail"),
        ("A3", "teacher_tiny_flux_refine"),
        ("A4", "teacher_tiny_flux_deep"),
        ("B", "teacher_tiny_flux_guidance"),
        ("A5", "teacher_tiny_flux_stars"),
        ("A6", "teacher_tiny_flux_sizes"),
        ("B2", "teacher_tiny_flux_guidance_a6"),
        ("A7", "teacher_tiny_flux_recondition"),
        ("B3", "teacher_tiny_flux_guidance_a7"),
        ("A8", "teacher_tiny_flux_fresh"),
        ("B4", "teacher_tiny_flux_guidance_a8"),
        ("A9", "teacher_tiny_flux_triangles"),
        ("B5", "teacher_tiny_flux_guidance_a9"),
    ),
    "qwen_image": (
        ("A", "teacher_tiny_qwen"),
        ("A2", "teacher_tiny_qwen_detail"),
        ("A3", "teacher_tiny_qwen_refine"),
        ("A4", "teacher_tiny_qwen_shapes"),
    ),
}


def stage_export(arch: str, stage: str) -> Path:
    """Where teacher stage ``stage`` (not the last) is exported for the next one to start from."""
    return CHECKPOINTS / f"tiny-{STACK_NAMES[arch]}-stage-{stage.lower()}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arch", choices=["flux", "qwen_image", "all"], default="all")
    parser.add_argument("--resume", action="store_true", help="skip stages already done")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per training run")
    parser.add_argument("--num-prompts", type=int, default=200, help="evaluation prompts")
    parser.add_argument(
        "--bar-prompts",
        type=int,
        default=1000,
        help="one-object prompts of the bar measurement (teacher and 2-NFE students)",
    )
    return parser.parse_args(argv)


class Builder:
    def __init__(self, threads: int, resume: bool, num_prompts: int, bar_prompts: int) -> None:
        self.env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        self.resume = resume
        self.num_prompts = num_prompts
        self.bar_prompts = bar_prompts
        self.timings: list[tuple[str, float]] = []

    def stage(self, name: str, done: Path | None, action: Callable[[], None]) -> None:
        """Run ``action`` unless resuming and ``done`` exists; print and record its wall time."""
        if self.resume and done is not None and done.exists():
            print(f"[tiny world] {name}: already done ({done})", flush=True)
            return
        print(f"[tiny world] {name} ...", flush=True)
        start = time.perf_counter()
        action()
        seconds = time.perf_counter() - start
        self.timings.append((name, seconds))
        print(f"[tiny world] {name}: {seconds:.0f} s", flush=True)

    def python(self, *argv: str) -> None:
        command = [sys.executable, *argv]
        print("  $ " + " ".join(command[1:]), flush=True)
        subprocess.run(command, check=True, cwd=ROOT, env=self.env)

    def train(self, config: str) -> None:
        """``tools/train.py``: from scratch, or (``--resume``) continuing the run's checkpoints,
        which is a no-op for a finished run."""
        resume = [] if self.resume else ["--no-resume"]
        self.python("tools/train.py", f"configs/tiny/{config}.py", *resume)


# ------------------------------------------------------------------------------ exports
def export_vae(arch: str, stack: Path) -> None:
    import numpy as np

    from arcflow.tinyworld.scenes import render_batch, sample_scene
    from arcflow.tinyworld.stack import ASSEMBLERS, build_vae, load_trained, set_latent_statistics

    vae = load_trained(build_vae(arch), CHECKPOINTS / f"vae_tiny_{STACK_NAMES[arch]}", "vae")
    rng = np.random.default_rng(1234)
    images = render_batch([sample_scene(rng) for _ in range(256)])
    ASSEMBLERS[arch](stack, vae=set_latent_statistics(vae, images))


def export_decoder(arch: str, stack: Path) -> None:
    """The refined decoder (EMA) into the stack's VAE; encoder and latent scale unchanged."""
    from arcflow.models.vae import load_vae
    from arcflow.tinyworld.stack import ASSEMBLERS, load_trained

    run = CHECKPOINTS / f"vae_tiny_{STACK_NAMES[arch]}_decoder"
    ASSEMBLERS[arch](stack, vae=load_trained(load_vae(str(stack)), run, "vae", partial=True))


def export_transformer(arch: str, run: str, out: Path, shipped: bool = False) -> None:
    """The EMA transformer of training run ``run`` -> ``out/transformer/`` (a stack or not).

    ``shipped``: stored in float16, which keeps all shipped weights under 40 MB; diffusers and
    the project load it as float32 (the velocity changes by ~3e-4 relative). Intermediate stages
    stay float32, as the next stage trains from them.
    """
    import torch
    from mmengine.config import Config

    from arcflow.models.loading import build_transformer
    from arcflow.tinyworld.stack import load_trained

    # The run's own architecture: a stage may have grown the model (transformer.deepen).
    architecture = Config.fromfile(f"configs/tiny/{run}.py").model.transformer.from_config
    transformer = build_transformer(arch, architecture.to_dict(), device="cpu")
    load_trained(transformer, CHECKPOINTS / run, "transformer")
    if shipped:
        transformer = transformer.to(torch.float16)
    transformer.save_pretrained(out / "transformer", safe_serialization=True)


def export_adapter(config: str, out: Path) -> None:
    """The EMA student of distillation run ``config`` -> ``out`` in the published format."""
    from mmengine.config import Config
    from safetensors.torch import load_file

    from arcflow.engine.checkpoint import latest_checkpoint
    from arcflow.models.adapter_format import save_arcflow_adapter
    from arcflow.models.builder import build_student_from_cfg

    cfg = Config.fromfile(f"configs/tiny/{config}.py")
    student = build_student_from_cfg(cfg.model.student.to_dict(), device="cpu")
    checkpoint = latest_checkpoint(CHECKPOINTS / config)
    if checkpoint is None:
        raise FileNotFoundError(f"no checkpoint of {config}: train it first")
    ema = load_file(str(checkpoint / "ema.safetensors"))
    student.load_trainable_state_dict({k.removeprefix("student."): v for k, v in ema.items()})
    save_arcflow_adapter(student, out)


# ------------------------------------------------------------------------------ stacks
def build_stack(builder: Builder, arch: str) -> None:
    from arcflow.tinyworld.stack import ASSEMBLERS

    name = STACK_NAMES[arch]
    stack = CHECKPOINTS / f"tiny-{name}"
    adapter = CHECKPOINTS / f"tiny-{name}-arcflow"
    linear = CHECKPOINTS / f"tiny-{name}-linear"
    if not builder.resume:
        # A fresh text side: the stack is rebuilt from nothing.
        for part in ("text_encoder", "text_encoder_2"):
            marker = stack / part / "config.json"
            if marker.exists():
                marker.unlink()
    builder.stage(f"{name}: text side", stack / "model_index.json", lambda: ASSEMBLERS[arch](stack))
    builder.stage(f"{name}: VAE", None, lambda: builder.train(f"vae_tiny_{name}"))
    builder.stage(f"{name}: VAE export", stack / "vae", lambda: export_vae(arch, stack))
    # The encoder is final from here on (the teacher trains on its latents); the decoder goes on.
    builder.stage(f"{name}: VAE decoder", None, lambda: builder.train(f"vae_tiny_{name}_decoder"))
    builder.stage(f"{name}: VAE decoder export", None, lambda: export_decoder(arch, stack))
    # Teacher stages, each exported (float32) for the next one to start from; the last one is
    # the shipped teacher.
    *earlier, (last, teacher_run) = TEACHER_STAGES[arch]
    for stage, run in earlier:
        out = stage_export(arch, stage)
        builder.stage(f"{name}: teacher stage {stage}", None, lambda r=run: builder.train(r))
        builder.stage(
            f"{name}: teacher stage {stage} export",
            out,
            lambda r=run, o=out: export_transformer(arch, r, o),
        )
    builder.stage(f"{name}: teacher stage {last}", None, lambda: builder.train(teacher_run))
    builder.stage(
        f"{name}: teacher export",
        stack / "transformer",
        lambda: export_transformer(arch, teacher_run, stack, shipped=True),
    )
    for config, out in ((f"arcflow_tiny_{name}", adapter), (f"linear_tiny_{name}", linear)):
        builder.stage(f"{name}: {config}", None, lambda c=config: builder.train(c))
        builder.stage(f"{name}: {config} export", out, lambda c=config, o=out: export_adapter(c, o))
    stack_args = ["tools/evaluate.py", "--preset", "tiny", "--arch", arch, "--model", str(stack)]
    stack_args += ["--adapter", str(adapter), "--linear-adapter", str(linear), "--seeds", "1"]
    report = Path("work_dirs") / f"tiny_world_{name}"
    evaluate = [*stack_args, "--prompts", str(builder.num_prompts), "--num-objects", "1,2"]
    evaluate += ["--out", str(report)]
    builder.stage(f"{name}: evaluation", report / "results.json", lambda: builder.python(*evaluate))
    # The bars (teacher >= 85 %, 2-NFE student >= 90 % of it) are read on a larger one-object
    # sample: at 200 images a caption match's 95 % interval spans about +-5 points.
    bar = Path("work_dirs") / f"tiny_world_{name}_bar"
    measure = [*stack_args, "--prompts", str(builder.bar_prompts), "--num-objects", "1"]
    measure += ["--samplers", "teacher50,arcflow2,linear2", "--out", str(bar)]
    builder.stage(
        f"{name}: bar measurement", bar / "results.json", lambda: builder.python(*measure)
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.chdir(ROOT)
    torch.set_num_threads(args.threads)
    builder = Builder(args.threads, args.resume, args.num_prompts, args.bar_prompts)
    total = time.perf_counter()
    builder.stage(
        "evaluator",
        EVALUATOR / "model.safetensors",
        lambda: builder.python("tools/train_evaluator.py", "--out", str(EVALUATOR)),
    )
    for arch in ("flux", "qwen_image") if args.arch == "all" else (args.arch,):
        build_stack(builder, arch)
    print("\n| stage | wall time |\n|---|---|")
    for name, seconds in builder.timings:
        print(f"| {name} | {seconds / 60:.1f} min |")
    print(f"| total | {(time.perf_counter() - total) / 60:.1f} min |")


if __name__ == "__main__":
    sys.exit(run_cli(main))
