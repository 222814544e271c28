"""Latency and peak memory of ArcFlow sampling against its teacher, measured in one process.

    python tools/benchmark.py --tiny                                  # tiny random archs, CPU
    python tools/benchmark.py --random-weights --full-size flux       # FLUX.1-dev, bf16, CUDA
    python tools/benchmark.py --random-weights --full-size qwen
    python tools/benchmark.py --pipeline flux                         # the shipped tiny pipeline
    python tools/benchmark.py --pipeline qwen --model DIR --adapter DIR
    python tools/benchmark.py --train configs/tiny/arcflow_tiny_flux.py   # distillation speed

Per architecture it reports, as JSON lines and a markdown table:

- ``loop/student`` and ``loop/teacher``: the denoising loop alone (arcflow.flow.sampling),
  student at ``--nfe`` evaluations vs teacher Euler at ``--teacher-steps`` steps (Qwen-Image's
  teacher: true CFG, two forwards a step), median of ``--repeats`` runs after ``--warmup``, peak
  memory, and ``loop/speedup`` = teacher median / student median;
- ``step/*``: one transformer forward of the teacher and of the student (LoRA and heads on), the
  ArcFlow heads' extra cost over the teacher's ``proj_out``, the closed-form move, and
  ``step/overhead`` = (heads' extra + move) / teacher forward;
- with ``--pipeline``: ``pipeline/*``, the same comparison through the diffusers pipeline (prompt
  encoding and VAE decoding included).

With ``--train CONFIG``: ``train/float32-eager`` and ``train/config``, one distillation iteration
of the config computed eagerly in float32 and as configured (its dtype, ``model.compile``), timed in
turns on one batch after ``--warmup`` iterations (compilation included there), each split into
teacher forwards, student forwards, backward, optimiser and the rest; ``train/speedup/config`` =
float32-eager median / config median (arcflow.evaluation.train_benchmark).

Random weights cost the same time and memory as trained ones: ``--full-size`` builds the released
architectures (LoRA rank 256, K = 16) with parameters on the meta device and materialises them on
the GPU in place, so 12 B / 20 B parameters never pass through host memory. Peak memory is CUDA's
max allocated on a GPU; on the CPU it is the process's peak resident set since the measurement
began (Linux ``VmHWM``, reset through ``/proc/self/clear_refs``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from mmengine.config import DictAction

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run from anywhere without an installed package

import arcflow.tinyworld.architectures  # noqa: E402, F401  (the "benchmark" size of --tiny)
import arcflow.tinyworld.presets  # noqa: E402, F401  (registers --preset tiny)
from arcflow.errors import run_cli  # noqa: E402
from arcflow.evaluation.benchmark import (  # noqa: E402
    Record,
    bench_loop,
    bench_merged_loop,
    bench_pipeline,
    bench_step,
    emit,
    machine_info,
    markdown_table,
)
from arcflow.evaluation.random_students import (  # noqa: E402
    RELEASED_STUDENT_CONFIGS,
    TEXT_LENGTHS,
    TINY_TEXT_LENGTHS,
    VAE_FACTOR,
    build_random_student,
    random_cond,
    student_config,
)
from arcflow.evaluation.train_benchmark import (  # noqa: E402
    FLOAT32_EAGER,
    bench_training,
    train_table,
)
from arcflow.flow.sampling import make_noise  # noqa: E402
from arcflow.pipelines.cli import DefaultsHelpFormatter  # noqa: E402
from arcflow.pipelines.loading import specs_under  # noqa: E402

ARCH_ALIASES = {"flux": "flux", "qwen": "qwen_image", "qwen_image": "qwen_image"}


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=DefaultsHelpFormatter,
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--tiny", action="store_true", help="tiny random architectures (CPU)")
    mode.add_argument(
        "--full-size",
        choices=sorted(ARCH_ALIASES),
        help="the released architecture with random weights (needs --random-weights)",
    )
    mode.add_argument(
        "--pipeline", choices=sorted(ARCH_ALIASES), help="benchmark the diffusers pipeline too"
    )
    mode.add_argument(
        "--train", metavar="CONFIG", help="time distillation iterations of this training config"
    )
    parser.add_argument(
        "--cfg-options",
        nargs="+",
        action=DictAction,
        default={},
        help="--train: overrides applied to every variant, as tools/train.py takes them",
    )
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help="state that --full-size runs on random weights (no checkpoint is read)",
    )
    parser.add_argument(
        "--archs", nargs="+", choices=sorted(ARCH_ALIASES), default=["flux", "qwen"]
    )
    parser.add_argument("--model", help="--pipeline: diffusers pipeline folder (default: tiny)")
    parser.add_argument("--adapter", help="--pipeline: ArcFlow adapter folder (default: tiny)")
    parser.add_argument("--device", default=str(default_device()))
    parser.add_argument("--dtype", help="default: bfloat16 on CUDA, float32 on the CPU")
    parser.add_argument(
        "--resolution", type=int, help="image side in pixels (default: 1024, tiny: 128)"
    )
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--nfe", type=int, default=2)
    parser.add_argument("--teacher-steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--teacher-repeats", type=int, help="repeats of the teacher loop (default: --repeats)"
    )
    parser.add_argument(
        "--step-repeats", type=int, default=20, help="repeats of the single-step measurements"
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--out", type=Path, help="append the JSON lines to this file")
    parser.add_argument("--markdown", type=Path, help="write the markdown table to this file")
    args = parser.parse_args(argv)
    if args.full_size and not args.random_weights:
        parser.error("--full-size builds random weights: pass --random-weights to confirm")
    return args


def run(args: argparse.Namespace) -> list[Record]:
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype) if args.dtype else None
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    teacher_repeats = args.teacher_repeats or args.repeats
    records = [machine_info(device)]
    out = args.out.open("a") if args.out else None
    emit(records[0], out)

    def keep(new: list[Record]) -> None:
        for record in new:
            emit(record, out)
        records.extend(new)

    if args.train:
        variants = {
            "float32-eager": {**args.cfg_options, **FLOAT32_EAGER},
            "config": dict(args.cfg_options),
        }
        keep(bench_training(args.train, variants, max(args.warmup, 1), args.repeats))
        table = train_table(records)
        print(table)
        if args.markdown:
            args.markdown.write_text(table + "\n")
        if out is not None:
            out.close()
        return records
    if args.pipeline:
        arch = ARCH_ALIASES[args.pipeline]
        tiny = specs_under(REPO_ROOT)[arch]
        keep(
            bench_pipeline(
                arch,
                args.model or tiny.preset_folder("tiny", "models"),
                args.adapter or tiny.preset_folder("tiny", "adapters"),
                device,
                dtype,
                args.resolution,
                args.nfe,
                args.teacher_steps,
                args.warmup,
                args.repeats,
                teacher_repeats,
            )
        )
        archs = []
    else:
        archs = [ARCH_ALIASES[args.full_size]] if args.full_size else args.archs
    resolution = args.resolution or (128 if args.tiny else 1024)
    for arch in dict.fromkeys(ARCH_ALIASES[a] for a in archs):
        config = student_config(REPO_ROOT / RELEASED_STUDENT_CONFIGS[arch], args.tiny, dtype)
        student = build_random_student(config, device)
        student.set_trainable_dtype(dtype)  # as load_arcflow_adapter gives the student
        lengths = (TINY_TEXT_LENGTHS if args.tiny else TEXT_LENGTHS)[arch]
        cond = random_cond(student, args.batch, lengths, device)
        side = resolution // VAE_FACTOR
        noise = make_noise(args.batch, student.latent_channels, side, side, device=device)
        loops = bench_loop(
            student,
            cond,
            noise,
            args.nfe,
            args.teacher_steps,
            args.warmup,
            args.repeats,
            teacher_repeats,
        )
        keep(loops)
        keep(bench_step(student, cond, noise, args.warmup, args.step_repeats))
        keep(bench_merged_loop(student, cond, noise, args.nfe, args.warmup, args.repeats, loops))
        del student, cond
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if out is not None:
        out.close()
    table = markdown_table(records)
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n")
    return records


def main(argv: list[str] | None = None) -> int:
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
