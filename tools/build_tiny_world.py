"""Re-train the whole tiny world from scratch on a CPU, in order, with the wall time of each stage.

    python tools/build_tiny_world.py                  # both stacks, FLUX first
    python tools/build_tiny_world.py --arch flux      # one stack
    python tools/build_tiny_world.py --resume         # skip stages whose output already exists
    python tools/build_tiny_world.py --dry-run        # print the plan and its commands only
    python tools/build_tiny_world.py --arch flux --stage 07_guidance_distill   # one stage

The recipe of a stack is the folder ``configs/tiny/build/<flux|qwen>/``: stage configs named
``NN_<what-it-does>.py``, numbered in run order from 01. Each declares, in ``_stage`` (read by
this tool, not by ``tools/train.py``), its kind and the earlier stages it needs::

    _stage = dict(kind="guidance", start="06_teacher_deepen", cfg_teacher="06_teacher_deepen")

- ``vae``: the stack's VAE; its EMA and measured latent statistics -> ``<stack>/vae/``;
- ``decoder`` (``start``: the vae stage): the decoder refined alone from the stack's VAE
  (``model.pretrained``), exported back into ``<stack>/vae/``;
- ``teacher``: conditional flow matching, from scratch or from the export of ``start``
  (``model.transformer.from_pretrained``);
- ``guidance``: guidance distillation from the export of ``start``, towards the guided velocity
  of the frozen teacher exported by ``cfg_teacher`` (``model.cfg_teacher.transformer``).

Every teacher or guidance stage is exported (float32) to
``checkpoints/tiny-<stack>-stages/<stage>/`` for the stages after it, except the last, whose EMA
is the shipped teacher (``<stack>/transformer/``, float16). The tool hands each stage its inputs
as ``--cfg-options`` of ``tools/train.py`` and names its run ``tiny_<stack>_<stage>``
(checkpoints under ``checkpoints/tiny_<stack>_<stage>/``), so that stage configs name no other
stage's files. To run one stage by hand, with the exports it needs already on disk, use
``--stage`` (it trains and exports that stage), or run its ``tools/train.py`` line from
``--dry-run``.

Per stack:

1. evaluator: ``tools/train_evaluator.py`` (once, if checkpoints/tiny-evaluator/ is missing);
2. text side: tokenizers, frozen tiny text encoders and scheduler -> checkpoints/tiny-<arch>/;
3. the recipe's stages, each trained then exported;
4. distillation: ``configs/tiny/arcflow_tiny_<arch>.py`` (K = 16) ->
   checkpoints/tiny-<arch>-arcflow/ in the published adapter format, and the K = 1 baseline
   ``linear_tiny_<arch>.py`` -> checkpoints/tiny-<arch>-linear/ (measured, not shipped);
5. evaluation: ``tools/evaluate.py`` (N one-object and N two-object held-out prompts, the VAE's
   reconstructions as reference) -> work_dirs/tiny_world_<arch>/results.{json,md}, grid.png;
   then the bar measurement, the teacher and both 2-NFE students on ``--bar-prompts`` (1000)
   one-object prompts -> work_dirs/tiny_world_<arch>_bar/.

Training runs use one thread per process (``--threads``): on a small shared CPU, tiny models run
several times faster single-threaded than with threads fighting over cores.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch

from arcflow.errors import UserError, run_cli

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = Path("checkpoints")
EVALUATOR = CHECKPOINTS / "tiny-evaluator"
RECIPES = ROOT / "configs" / "tiny" / "build"
STACK_NAMES = {"flux": "flux", "qwen_image": "qwen"}


class Kind(NamedTuple):
    """What a kind of stage trains, the ``_stage`` keys it requires and may give besides
    ``kind``, and the kinds of stage it may start from."""

    trainer: str
    required: frozenset[str]
    allowed: frozenset[str]
    starts_from: frozenset[str]


_NONE: frozenset[str] = frozenset()
STAGE_KINDS = {
    "vae": Kind("VAETrainer", _NONE, _NONE, _NONE),
    "decoder": Kind("VAETrainer", frozenset({"start"}), frozenset({"start"}), frozenset({"vae"})),
    "teacher": Kind(
        "FlowMatchingTrainer", _NONE, frozenset({"start"}), frozenset({"teacher", "guidance"})
    ),
    "guidance": Kind(
        "FlowMatchingTrainer",
        frozenset({"start", "cfg_teacher"}),
        frozenset({"start", "cfg_teacher"}),
        frozenset({"teacher", "guidance"}),
    ),
}
_STAGE_FILE = re.compile(r"(\d\d)_[a-z0-9_]+\.py")


class RecipeError(UserError):
    """A recipe folder whose stages are misnumbered or misdeclared."""


@dataclass(frozen=True)
class Stage:
    """One stage of a stack's recipe: its config and what it starts from."""

    arch: str
    config: Path
    kind: str
    start: str | None = None
    cfg_teacher: str | None = None

    @property
    def name(self) -> str:
        return self.config.stem

    @property
    def run(self) -> str:
        """The training run's name: checkpoints under ``checkpoints/<run>/``."""
        return f"tiny_{STACK_NAMES[self.arch]}_{self.name}"


def stack_dir(arch: str) -> Path:
    return CHECKPOINTS / f"tiny-{STACK_NAMES[arch]}"


def read_stage(arch: str, config: Path, earlier: Mapping[str, Stage]) -> Stage:
    """The stage that ``config`` declares (``_stage``), checked against the stages before it."""
    from mmengine.config import Config

    cfg = Config.fromfile(str(ROOT / config))
    declared = cfg.get("_stage")
    if not isinstance(declared, Mapping) or declared.get("kind") not in STAGE_KINDS:
        raise RecipeError(
            f"{config} must declare _stage = dict(kind=...) with kind one of "
            f"{', '.join(STAGE_KINDS)}"
        )
    declared = dict(declared)
    kind = declared.pop("kind")
    spec = STAGE_KINDS[kind]
    if set(declared) - spec.allowed or spec.required - set(declared):
        raise RecipeError(
            f"{config}: a {kind} stage's _stage takes {sorted(spec.required)} (required) of "
            f"{sorted(spec.allowed)}, got {sorted(declared)}"
        )
    for key, name in declared.items():
        if name not in earlier:
            raise RecipeError(
                f"{config}: _stage {key}={name!r} is not an earlier stage of the recipe "
                f"({', '.join(earlier) or 'none'})"
            )
    start = declared.get("start")
    if start is not None and earlier[start].kind not in spec.starts_from:
        raise RecipeError(
            f"{config}: a {kind} stage starts from a stage of kind "
            f"{' or '.join(sorted(spec.starts_from))}, not {earlier[start].kind} {start}"
        )
    teacher = declared.get("cfg_teacher")
    if teacher is not None and earlier[teacher].kind != "teacher":
        raise RecipeError(f"{config}: cfg_teacher {teacher} must be a conditional teacher stage")
    if (cfg.model.get("type"), cfg.model.get("arch")) != (spec.trainer, arch):
        raise RecipeError(
            f"{config}: a {kind} stage of the {arch} recipe trains a {spec.trainer} of arch "
            f"{arch!r}, got {cfg.model.get('type')} of arch {cfg.model.get('arch')!r}"
        )
    return Stage(arch, config, kind, start, teacher)


def recipe(arch: str, folder: Path | None = None) -> list[Stage]:
    """The stages of ``arch``'s recipe folder, in run order; numbering and lineage are checked."""
    folder = folder or RECIPES / STACK_NAMES[arch]
    configs = sorted(folder.glob("*.py"))
    if not configs:
        raise RecipeError(f"no stage config in {folder}")
    stages: dict[str, Stage] = {}
    for number, config in enumerate(configs, start=1):
        match = _STAGE_FILE.fullmatch(config.name)
        if match is None or int(match.group(1)) != number:
            raise RecipeError(
                f"{config}: stage configs are named NN_<what-it-does>.py and numbered 01, 02, ... "
                f"without gaps; expected number {number:02d} here"
            )
        # Named from the repository root, as the commands run there.
        if config.is_relative_to(ROOT):
            config = config.relative_to(ROOT)
        stages[config.stem] = read_stage(arch, config, stages)
    return list(stages.values())


def export_dir(stage: Stage, stages: list[Stage]) -> Path:
    """Where ``stage`` is exported: the stack (VAE stages, the last stage) or a stage folder."""
    if stage.kind in ("vae", "decoder") or stage is stages[-1]:
        return stack_dir(stage.arch)
    return CHECKPOINTS / f"tiny-{STACK_NAMES[stage.arch]}-stages" / stage.name


def stage_inputs(stage: Stage, stages: list[Stage]) -> dict[str, str]:
    """The ``--cfg-options`` that hand ``stage`` its run name and the exports it starts from."""
    by_name = {s.name: s for s in stages}
    options = {"run_name": stage.run}
    if stage.kind == "decoder":
        options["model.pretrained"] = str(export_dir(by_name[stage.start], stages))
    for key, source in (
        ("transformer", stage.start),
        ("cfg_teacher.transformer", stage.cfg_teacher),
    ):
        if stage.kind in ("teacher", "guidance") and source is not None:
            options[f"model.{key}.from_pretrained"] = str(export_dir(by_name[source], stages))
            options[f"model.{key}.subfolder"] = "transformer"
    return options


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
    parser.add_argument(
        "--dry-run", action="store_true", help="print each step and command, run nothing"
    )
    parser.add_argument(
        "--stage",
        metavar="NAME",
        help="train and export this recipe stage only (e.g. 07_guidance_distill; needs --arch)",
    )
    args = parser.parse_args(argv)
    if args.stage is not None and args.arch == "all":
        parser.error("--stage needs --arch flux or --arch qwen_image")
    return args


class Builder:
    def __init__(
        self, threads: int, resume: bool, num_prompts: int, bar_prompts: int, dry_run: bool = False
    ) -> None:
        self.env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        self.resume = resume
        self.num_prompts = num_prompts
        self.bar_prompts = bar_prompts
        self.dry_run = dry_run
        self.timings: list[tuple[str, float]] = []

    def stage(self, name: str, done: Path | None, action: Callable[[], None]) -> None:
        """Run ``action`` unless resuming and ``done`` exists; print and record its wall time.
        A dry run prints the step (and any command) without running it."""
        if self.resume and done is not None and done.exists():
            print(f"[tiny world] {name}: already done ({done})", flush=True)
            return
        print(f"[tiny world] {name} ...", flush=True)
        start = time.perf_counter()
        action()
        if not self.dry_run:
            seconds = time.perf_counter() - start
            self.timings.append((name, seconds))
            print(f"[tiny world] {name}: {seconds:.0f} s", flush=True)

    def python(self, *argv: str) -> None:
        print("  $ python " + shlex.join(argv), flush=True)
        if not self.dry_run:
            subprocess.run([sys.executable, *argv], check=True, cwd=ROOT, env=self.env)

    def train(self, config: str | Path, options: Mapping[str, str] | None = None) -> None:
        """``tools/train.py CONFIG``: from scratch, or (``--resume``) continuing the run's
        checkpoints, which is a no-op for a finished run; ``options`` go to ``--cfg-options``."""
        argv = ["tools/train.py", str(config), *([] if self.resume else ["--no-resume"])]
        if options:
            argv += ["--cfg-options", *(f"{key}={value}" for key, value in options.items())]
        self.python(*argv)

    def export(self, action: Callable[[], None]) -> None:
        """An export step, which a dry run skips."""
        if not self.dry_run:
            action()


# ------------------------------------------------------------------------------ exports
def export_vae(stage: Stage) -> None:
    import numpy as np

    from arcflow.tinyworld.scenes import render_batch, sample_scene
    from arcflow.tinyworld.stack import ASSEMBLERS, build_vae, load_trained, set_latent_statistics

    vae = load_trained(build_vae(stage.arch), CHECKPOINTS / stage.run, "vae")
    rng = np.random.default_rng(1234)
    images = render_batch([sample_scene(rng) for _ in range(256)])
    ASSEMBLERS[stage.arch](stack_dir(stage.arch), vae=set_latent_statistics(vae, images))


def export_decoder(stage: Stage) -> None:
    """The refined decoder (EMA) into the stack's VAE; encoder and latent scale unchanged."""
    from arcflow.models.vae import load_vae
    from arcflow.tinyworld.stack import ASSEMBLERS, load_trained

    stack = stack_dir(stage.arch)
    vae = load_trained(load_vae(str(stack)), CHECKPOINTS / stage.run, "vae", partial=True)
    ASSEMBLERS[stage.arch](stack, vae=vae)


def export_transformer(stage: Stage, stages: list[Stage]) -> None:
    """The EMA transformer of ``stage``'s run -> ``<export>/transformer/``.

    The last stage's is the shipped teacher, stored in float16, which keeps all shipped weights
    under 40 MB; diffusers and the project load it as float32 (the velocity changes by ~3e-4
    relative). Intermediate stages stay float32, as the next stage trains from them.
    """
    from mmengine.config import Config

    from arcflow.models.builder import build_base_from_cfg
    from arcflow.tinyworld.stack import load_trained

    # The run's own architecture, built as its training built it: from its input export (grown
    # by transformer.deepen, if the stage grows it) or from the named size.
    cfg = Config.fromfile(str(ROOT / stage.config))
    cfg.merge_from_dict(stage_inputs(stage, stages))
    transformer = build_base_from_cfg(stage.arch, "cpu", **cfg.model.transformer.to_dict())
    load_trained(transformer, CHECKPOINTS / stage.run, "transformer")
    if stage is stages[-1]:
        transformer = transformer.to(torch.float16)
    transformer.save_pretrained(export_dir(stage, stages) / "transformer", safe_serialization=True)


EXPORTS: dict[str, Callable[[Stage, list[Stage]], None]] = {
    "vae": lambda stage, _: export_vae(stage),
    "decoder": lambda stage, _: export_decoder(stage),
    "teacher": export_transformer,
    "guidance": export_transformer,
}


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
def run_stage(builder: Builder, stage: Stage, stages: list[Stage]) -> None:
    """Train ``stage`` with its inputs, then export it where the stages after it read it."""
    label = f"{STACK_NAMES[stage.arch]}: {stage.name}"
    builder.stage(label, None, lambda: builder.train(stage.config, stage_inputs(stage, stages)))
    out = export_dir(stage, stages)
    # What marks the export done (--resume): the stack's VAE, or the stage's transformer; the
    # decoder refines the stack's VAE in place, so it is always exported again.
    done = {"vae": out / "vae", "decoder": None}.get(stage.kind, out / "transformer")
    builder.stage(
        f"{label} export -> {out}",
        done,
        lambda: builder.export(lambda: EXPORTS[stage.kind](stage, stages)),
    )


def build_stack(builder: Builder, arch: str) -> None:
    from arcflow.tinyworld.stack import ASSEMBLERS

    name = STACK_NAMES[arch]
    stack = stack_dir(arch)
    adapter = CHECKPOINTS / f"tiny-{name}-arcflow"
    linear = CHECKPOINTS / f"tiny-{name}-linear"
    stages = recipe(arch)
    if not builder.resume and not builder.dry_run:
        # A fresh text side: the stack is rebuilt from nothing.
        for part in ("text_encoder", "text_encoder_2"):
            marker = stack / part / "config.json"
            if marker.exists():
                marker.unlink()
    builder.stage(
        f"{name}: text side",
        stack / "model_index.json",
        lambda: builder.export(lambda: ASSEMBLERS[arch](stack)),
    )
    for stage in stages:
        run_stage(builder, stage, stages)
    for config, out in ((f"arcflow_tiny_{name}", adapter), (f"linear_tiny_{name}", linear)):
        builder.stage(
            f"{name}: {config}", None, lambda c=config: builder.train(f"configs/tiny/{c}.py")
        )
        builder.stage(
            f"{name}: {config} export",
            out,
            lambda c=config, o=out: builder.export(lambda: export_adapter(c, o)),
        )
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
    builder = Builder(args.threads, args.resume, args.num_prompts, args.bar_prompts, args.dry_run)
    total = time.perf_counter()
    if args.stage is not None:
        stages = recipe(args.arch)
        chosen = [stage for stage in stages if stage.name == args.stage]
        if not chosen:
            names = ", ".join(stage.name for stage in stages)
            raise RecipeError(
                f"--stage {args.stage} is no stage of the {args.arch} recipe: {names}"
            )
        run_stage(builder, chosen[0], stages)
        return
    builder.stage(
        "evaluator",
        EVALUATOR / "model.safetensors",
        lambda: builder.python("tools/train_evaluator.py", "--out", str(EVALUATOR)),
    )
    for arch in ("flux", "qwen_image") if args.arch == "all" else (args.arch,):
        build_stack(builder, arch)
    if args.dry_run:
        return
    print("\n| stage | wall time |\n|---|---|")
    for name, seconds in builder.timings:
        print(f"| {name} | {seconds / 60:.1f} min |")
    print(f"| total | {(time.perf_counter() - total) / 60:.1f} min |")


if __name__ == "__main__":
    sys.exit(run_cli(main))
