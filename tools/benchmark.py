"""Latency and peak memory of ArcFlow sampling against its teacher, measured in one process.

    python tools/benchmark.py --tiny                                  # tiny random archs, CPU
    python tools/benchmark.py --random-weights --full-size flux       # FLUX.1-dev, bf16, CUDA
    python tools/benchmark.py --random-weights --full-size qwen
    python tools/benchmark.py --pipeline flux                         # the shipped tiny pipeline
    python tools/benchmark.py --pipeline qwen --model DIR --adapter DIR

Per architecture it reports, as JSON lines and a markdown table:

- ``loop/student`` and ``loop/teacher``: the denoising loop alone (arcflow.pipelines.sampling),
  student at ``--nfe`` evaluations vs teacher Euler at ``--teacher-steps`` steps (Qwen-Image's
  teacher: true CFG, two forwards a step), median of ``--repeats`` runs after ``--warmup``, peak
  memory, and ``loop/speedup`` = teacher median / student median;
- ``step/*``: one transformer forward of the teacher and of the student (LoRA and heads on), the
  ArcFlow heads' extra cost over the teacher's ``proj_out``, the closed-form move, and
  ``step/overhead`` = (heads' extra + move) / teacher forward;
- with ``--pipeline``: ``pipeline/*``, the same comparison through the diffusers pipeline (prompt
  encoding and VAE decoding included).

Random weights cost the same time and memory as trained ones: ``--full-size`` builds the released
architectures (LoRA rank 256, K = 16) with parameters on the meta device and materialises them on
the GPU in place, so 12 B / 20 B parameters never pass through host memory. Peak memory is CUDA's
max allocated on a GPU; on the CPU it is the process's peak resident set since the measurement
began (Linux ``VmHWM``, reset through ``/proc/self/clear_refs``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run from anywhere without an installed package

from arcflow.models import ArcFlowStudent, build_student_from_cfg  # noqa: E402
from arcflow.models.arch import Cond  # noqa: E402
from arcflow.pipelines.sampling import make_noise, sample_student, sample_teacher  # noqa: E402

Record = dict[str, Any]

ARCH_ALIASES = {"flux": "flux", "qwen": "qwen_image", "qwen_image": "qwen_image"}
RELEASED_STUDENT_CONFIGS = {
    "flux": REPO_ROOT / "configs/_base_/models/flux_student.py",
    "qwen_image": REPO_ROOT / "configs/_base_/models/qwen_student.py",
}
# Small random architectures with the real ones' structure, for CPU runs and tests.
TINY_TRANSFORMERS: dict[str, dict[str, Any]] = {
    "flux": dict(
        patch_size=1,
        in_channels=16,
        num_layers=2,
        num_single_layers=2,
        attention_head_dim=32,
        num_attention_heads=3,
        joint_attention_dim=64,
        pooled_projection_dim=32,
        guidance_embeds=True,
        axes_dims_rope=(8, 12, 12),
    ),
    "qwen_image": dict(
        patch_size=2,
        in_channels=16,
        out_channels=4,
        num_layers=4,
        attention_head_dim=32,
        num_attention_heads=3,
        joint_attention_dim=64,
        axes_dims_rope=(8, 12, 12),
    ),
}
TINY_LORA_RANK = 8
# Prompt tokens: FluxPipeline pads T5 to max_sequence_length (512); Qwen-Image keeps the prompt's
# own length (a typical prompt after the template is dropped) and the empty negative prompt's.
TEXT_LENGTHS = {"flux": (512, 0), "qwen_image": (128, 6)}
TINY_TEXT_LENGTHS = {"flux": (32, 0), "qwen_image": (16, 4)}
VAE_FACTOR = 8  # pixels per latent pixel of both released VAEs


# ------------------------------------------------------------------------------ measuring
@dataclass(frozen=True)
class Timing:
    median_s: float
    runs_s: tuple[float, ...]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(
    fn: Callable[[], Any],
    device: torch.device,
    warmup: int = 1,
    repeats: int = 5,
    warmup_fn: Callable[[], Any] | None = None,
) -> Timing:
    """Median wall time of ``repeats`` calls of ``fn`` after ``warmup`` calls of ``warmup_fn``
    (default ``fn``: a cheaper stand-in, e.g. a 1-step teacher, warms the same kernels)."""
    for _ in range(warmup):
        (warmup_fn or fn)()
    synchronize(device)
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        runs.append(time.perf_counter() - start)
    return Timing(statistics.median(runs), tuple(runs))


def time_interleaved(
    fns: Sequence[Callable[[], Any]], repeats: Sequence[int], device: torch.device
) -> list[Timing]:
    """Median wall times of ``repeats[i]`` calls of ``fns[i]``, the calls taken round-robin (no
    warm-up: warm up first)."""
    runs: list[list[float]] = [[] for _ in fns]
    for turn in range(max(repeats)):
        for fn, count, times in zip(fns, repeats, runs):
            if turn < count:
                start = time.perf_counter()
                fn()
                synchronize(device)
                times.append(time.perf_counter() - start)
    return [Timing(statistics.median(times), tuple(times)) for times in runs]


_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak: CUDA's allocator statistics, or Linux's per-process RSS high-water mark."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    elif _CLEAR_REFS.exists():
        try:
            _CLEAR_REFS.write_text("5")  # "5" resets VmHWM to the current RSS
        except OSError:
            pass  # not permitted here: peak_memory_mb falls back to the lifetime peak


def peak_memory_mb(device: torch.device) -> float:
    """Peak since :func:`reset_peak_memory`: CUDA max allocated, else peak RSS (MiB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    if _STATUS.exists():
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**10  # kB
    from arcflow.engine.monitor import peak_memory_mb as lifetime_peak_mb

    return lifetime_peak_mb()


def machine_info(device: torch.device) -> Record:
    """What produced the numbers: device, CPU, library versions, UTC date."""
    import diffusers

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info: Record = {
        "name": "machine",
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "device": str(device),
        "cpu": cpu,
        "cpu_count": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        # other processes' load skews CPU timings: recorded so that numbers can be judged
        "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "python": platform.python_version(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1))
        info["cuda"] = torch.version.cuda
    return info


# ------------------------------------------------------------------------------ random students
def student_config(
    arch: str,
    tiny: bool,
    dtype: torch.dtype,
    gradient_checkpointing: bool | None = None,
) -> dict[str, Any]:
    """The released student config of ``arch`` without its weights source; ``tiny`` swaps in a
    small architecture (and LoRA rank) of the same structure."""
    from mmengine.config import Config

    cfg = Config.fromfile(str(RELEASED_STUDENT_CONFIGS[arch])).model.student.to_dict()
    transformer = dict(cfg["transformer"])
    transformer.pop("from_pretrained", None)
    transformer["torch_dtype"] = str(dtype).removeprefix("torch.")
    if tiny:
        transformer["from_config"] = dict(TINY_TRANSFORMERS[arch])
        cfg["lora_rank"] = cfg["lora_alpha"] = TINY_LORA_RANK
    cfg["transformer"] = transformer
    if gradient_checkpointing is not None:
        cfg["gradient_checkpointing"] = gradient_checkpointing
    return cfg


def build_meta_student(cfg: Mapping[str, Any]) -> ArcFlowStudent:
    """The student of ``cfg`` with every parameter on the meta device (no memory).

    Buffers and plain tensor attributes stay real (on the CPU): Qwen-Image's RoPE tables are such
    attributes, and a meta copy of them could not be materialised.
    """
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        return build_student_from_cfg(cfg, device="cpu")


def parameter_bytes(module: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


@torch.no_grad()
def materialize_(
    student: ArcFlowStudent, device: torch.device, seed: int = 0, std: float = 0.02
) -> ArcFlowStudent:
    """Give every meta parameter storage on ``device`` and a cheap random init, in place.

    Matrices get N(0, std^2), norm scales 1, biases 0. Then the student is put back at its
    documented initialisation (heads from the teacher projection, the final modulation copied,
    LoRA B = 0), so that it starts as the teacher, as a real student does.
    """
    generator = torch.Generator(device=device).manual_seed(seed)
    made: dict[int, nn.Parameter] = {}  # shared parameters stay shared
    for module in student.modules():
        for name, param in list(module.named_parameters(recurse=False)):
            if not param.is_meta:
                continue
            if id(param) not in made:
                data = torch.empty(param.shape, dtype=param.dtype, device=device)
                if data.ndim >= 2:
                    data.normal_(0.0, std, generator=generator)
                else:
                    data.fill_(1.0 if name == "weight" else 0.0)
                made[id(param)] = nn.Parameter(data, requires_grad=param.requires_grad)
            setattr(module, name, made[id(param)])
    student.to(device)
    leftover = [
        name for name, t in [*student.named_parameters(), *student.named_buffers()] if t.is_meta
    ]
    if leftover:
        raise RuntimeError(f"tensors left on the meta device: {leftover[:5]}")
    student.head.reset_parameters()
    forked = student.transformer.norm_out.linear
    forked.student.load_state_dict(forked.teacher.state_dict())
    for layer in student.lora_layers().values():
        for lora_b in layer.lora_B.values():
            lora_b.weight.zero_()
    return student


def build_random_student(
    cfg: Mapping[str, Any], device: torch.device, seed: int = 0
) -> ArcFlowStudent:
    """``build_meta_student`` then ``materialize_``; in eval mode (no LoRA dropout)."""
    return materialize_(build_meta_student(cfg), device, seed).eval()


def random_cond(
    student: ArcFlowStudent,
    batch: int,
    text_lengths: tuple[int, int],
    device: torch.device,
    seed: int = 0,
) -> Cond:
    """Random prompt embeddings shaped as the pipelines give them (see ``arcflow.models.arch``).

    ``text_lengths`` = (prompt tokens, negative-prompt tokens); the latter only for Qwen-Image,
    whose teacher runs true CFG.
    """
    config = student.transformer.config
    dtype = student.arch.input_dtype(student.transformer)
    gen = torch.Generator().manual_seed(seed)
    length, negative_length = text_lengths

    def embeds(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=gen).to(device=device, dtype=dtype)

    def mask(tokens: int) -> torch.Tensor:
        return torch.ones(batch, tokens, dtype=torch.long, device=device)

    if student.arch.name == "flux":
        return {
            "prompt_embeds": embeds(batch, length, config.joint_attention_dim),
            "pooled_prompt_embeds": embeds(batch, config.pooled_projection_dim),
        }
    return {
        "prompt_embeds": embeds(batch, length, config.joint_attention_dim),
        "prompt_embeds_mask": mask(length),
        "negative_prompt_embeds": embeds(batch, negative_length, config.joint_attention_dim),
        "negative_prompt_embeds_mask": mask(negative_length),
    }


def teacher_forwards_per_step(student: ArcFlowStudent) -> int:
    """2 for a true-CFG teacher (Qwen-Image), 1 for an embedded-guidance one (FLUX)."""
    guided = student.arch.name == "qwen_image" and student.guidance_scale not in (None, 1.0)
    return 2 if guided else 1


# ------------------------------------------------------------------------------ benchmarks
def _record(name: str, arch: str, timing: Timing, **extra: Any) -> Record:
    return {
        "name": name,
        "arch": arch,
        "median_ms": round(timing.median_s * 1e3, 3),
        "runs_ms": [round(t * 1e3, 3) for t in timing.runs_s],
        **extra,
    }


def _speedup(name: str, arch: str, teacher: Record, student: Record) -> Record:
    return {
        "name": name,
        "arch": arch,
        "ratio": round(teacher["median_ms"] / student["median_ms"], 2),
    }


def bench_loop(
    student: ArcFlowStudent,
    cond: Cond,
    noise: torch.Tensor,
    nfe: int,
    teacher_steps: int,
    warmup: int,
    repeats: int,
    teacher_repeats: int,
) -> list[Record]:
    """Student ``nfe`` vs teacher ``teacher_steps`` denoising loops from the same noise.

    Peak memory comes from the warm-up runs (the teacher's from a 1-step run: every step holds the
    same tensors); the timed runs alternate between student and teacher, so that both meet the
    same background load on a shared machine.
    """
    device, arch = noise.device, student.arch.name
    forwards = (nfe, teacher_steps * teacher_forwards_per_step(student))
    peaks = []
    for fn in (
        lambda: sample_student(student, noise, cond, nfe),
        lambda: sample_teacher(student, noise, cond, 1),
    ):
        reset_peak_memory(device)
        for _ in range(max(warmup, 1)):
            fn()
        synchronize(device)
        peaks.append(round(peak_memory_mb(device)))
    timings = time_interleaved(
        [
            lambda: sample_student(student, noise, cond, nfe),
            lambda: sample_teacher(student, noise, cond, teacher_steps),
        ],
        [repeats, teacher_repeats],
        device,
    )
    records = [
        _record(
            f"loop/{role}",
            arch,
            timing,
            forwards=count,
            per_forward_ms=round(timing.median_s * 1e3 / count, 3),
            peak_mem_mb=peak,
        )
        for role, timing, count, peak in zip(("student", "teacher"), timings, forwards, peaks)
    ]
    return [*records, _speedup("loop/speedup", arch, records[1], records[0])]


@torch.no_grad()
def bench_step(
    student: ArcFlowStudent, cond: Cond, noise: torch.Tensor, warmup: int, repeats: int
) -> list[Record]:
    """One transformer forward (teacher, student) and the ArcFlow-specific work of a step, timed
    round-robin after a warm-up so that all of them meet the same background load."""
    device, arch = noise.device, student.arch.name
    sigma = torch.ones(noise.shape[0], device=device)
    # One forward of the base: FLUX embeds its guidance; Qwen-Image's CFG would double it.
    single = 1.0 if arch == "qwen_image" else None
    policy = student.student_policy(noise, sigma, cond)
    head = student.head
    tokens = noise.shape[-2] * noise.shape[-1] // head.patch_size**2
    weight = head.teacher_proj.weight
    hidden = torch.randn(noise.shape[0], tokens, weight.shape[1], device=device, dtype=weight.dtype)

    def switch_roles() -> None:
        with student.teacher_mode():
            pass

    fns = [
        lambda: student.teacher_velocity(noise, sigma, cond, guidance_scale=single),
        lambda: student.student_policy(noise, sigma, cond),
        lambda: head(hidden),
        lambda: head.teacher_proj(hidden),
        lambda: policy.move(noise, 1.0, 0.5),
        switch_roles,
    ]
    for _ in range(warmup):
        for fn in fns:
            fn()
    timings = time_interleaved(fns, [repeats] * len(fns), device)
    teacher, forward, heads, proj, move, switch = timings
    extra_s = max(heads.median_s - proj.median_s, 0.0) + move.median_s
    return [
        _record("step/teacher_forward", arch, teacher, forwards=1),
        _record("step/student_forward", arch, forward, forwards=1),
        _record("step/heads", arch, heads, teacher_proj_ms=round(proj.median_s * 1e3, 3)),
        _record("step/move", arch, move),
        # entering and leaving the teacher role (peft disables/enables every adapter): paid by
        # every teacher call, so inside step/teacher_forward and the teacher loop
        _record("step/teacher_mode_switch", arch, switch),
        {
            "name": "step/overhead",
            "arch": arch,
            "ratio": round(extra_s / teacher.median_s, 4),
            "lora_and_heads_ratio": round(forward.median_s / teacher.median_s - 1, 4),
        },
    ]


def bench_pipeline(
    arch: str,
    model: str | None,
    adapter: str | None,
    device: torch.device,
    dtype: torch.dtype,
    size: int | None,
    nfe: int,
    teacher_steps: int,
    warmup: int,
    repeats: int,
    teacher_repeats: int,
) -> list[Record]:
    """The whole diffusers pipeline (text encoding, sampling, VAE decoding), student vs teacher.

    ``model``/``adapter`` default to the shipped tiny stack of ``arch`` (checkpoints/tiny-*).
    """
    from arcflow.pipelines.cli import FLUX, QWEN_IMAGE, load_pipeline, quiet_libraries

    spec = FLUX if arch == "flux" else QWEN_IMAGE
    quiet_libraries()
    model = model or str(REPO_ROOT / spec.tiny_model)
    adapter = adapter or str(REPO_ROOT / spec.tiny_adapter)
    pipe = load_pipeline(spec, model, adapter, dtype, str(device), offload=False)
    pipe.set_progress_bar_config(disable=True)
    tiny = model.rstrip("/").endswith(spec.tiny_model)
    size = size or (spec.tiny_size if tiny else 1024)
    max_length = spec.tiny_max_sequence_length if tiny else 512

    def run(**kwargs: Any) -> Any:
        generator = torch.Generator().manual_seed(0)
        return pipe(
            "a benchmark prompt",
            height=size,
            width=size,
            generator=generator,
            max_sequence_length=max_length,
            **kwargs,
        )

    records = []
    for name, kwargs, count in (
        ("pipeline/student", dict(num_inference_steps=nfe), repeats),
        ("pipeline/teacher", dict(teacher_steps=teacher_steps), teacher_repeats),
    ):
        reset_peak_memory(device)
        # a 1-step teacher warms the teacher's kernels without paying 50 steps
        warm = dict(teacher_steps=1) if "teacher_steps" in kwargs else kwargs
        timing = time_call(
            lambda k=kwargs: run(**k), device, warmup, count, lambda w=warm: run(**w)
        )
        records.append(
            _record(name, arch, timing, size=size, peak_mem_mb=round(peak_memory_mb(device)))
        )
    records.append(_speedup("pipeline/speedup", arch, records[1], records[0]))
    return records


# ------------------------------------------------------------------------------ reporting
def _ratio_cell(record: Record) -> str:
    if "ratio" not in record:
        return record.get("status", "")
    if record["name"].endswith("overhead"):
        return f"{100 * record['ratio']:.2f}% of a teacher forward"
    return f"{record['ratio']:g}x"


def markdown_table(records: list[Record]) -> str:
    """One row per measurement: median, forwards, peak memory, ratios."""
    lines = [
        "| arch | measurement | transformer forwards | median (ms) | peak memory (MiB) | ratio |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in records:
        if r["name"] == "machine":
            continue
        cells = [
            r.get("arch", ""),
            r["name"],
            str(r.get("forwards", "")),
            f"{r['median_ms']:.2f}" if "median_ms" in r else "",
            str(r.get("peak_mem_mb", "")),
            _ratio_cell(r),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def emit(record: Record, out: Any | None) -> None:
    """Print one JSON line (and append it to ``out``)."""
    line = json.dumps(record)
    print(line, flush=True)
    if out is not None:
        out.write(line + "\n")
        out.flush()


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
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

    if args.pipeline:
        arch = ARCH_ALIASES[args.pipeline]
        keep(
            bench_pipeline(
                arch,
                args.model,
                args.adapter,
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
        student = build_random_student(student_config(arch, args.tiny, dtype), device)
        lengths = (TINY_TEXT_LENGTHS if args.tiny else TEXT_LENGTHS)[arch]
        cond = random_cond(student, args.batch, lengths, device)
        side = resolution // VAE_FACTOR
        noise = make_noise(args.batch, student.latent_channels, side, side, device=device)
        keep(
            bench_loop(
                student,
                cond,
                noise,
                args.nfe,
                args.teacher_steps,
                args.warmup,
                args.repeats,
                teacher_repeats,
            )
        )
        keep(bench_step(student, cond, noise, args.warmup, args.step_repeats))
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
    sys.exit(main())
