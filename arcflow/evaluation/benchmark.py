"""Latency and peak memory of ArcFlow sampling against its teacher, measured in one process
(``tools/benchmark.py``, ``tools/gpu_check.py``).

Peak memory is CUDA's max allocated on a GPU; on the CPU it is the process's peak resident set since
the measurement began (Linux ``VmHWM``, reset through ``/proc/self/clear_refs``).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from arcflow.evaluation.random_students import teacher_forwards_per_step
from arcflow.flow.sampling import sample_student, sample_teacher
from arcflow.models import ArcFlowStudent
from arcflow.models.arch import Cond

Record = dict[str, Any]


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
def bench_merged_loop(
    student: ArcFlowStudent,
    cond: Cond,
    noise: torch.Tensor,
    nfe: int,
    warmup: int,
    repeats: int,
    loops: list[Record],
) -> list[Record]:
    """The student loop after :meth:`ArcFlowStudent.merge_lora`, against the teacher loop of
    ``loops`` (what :func:`bench_loop` returned). Merging removes the teacher: measure it last."""
    device, arch = noise.device, student.arch.name
    teacher = next(r for r in loops if r["name"] == "loop/teacher")
    student.merge_lora()
    reset_peak_memory(device)
    timing = time_call(lambda: sample_student(student, noise, cond, nfe), device, warmup, repeats)
    record = _record(
        "loop/student_merged",
        arch,
        timing,
        forwards=nfe,
        per_forward_ms=round(timing.median_s * 1e3 / nfe, 3),
        peak_mem_mb=round(peak_memory_mb(device)),
    )
    return [record, _speedup("loop/speedup_merged", arch, teacher, record)]


@torch.no_grad()
def bench_step(
    student: ArcFlowStudent, cond: Cond, noise: torch.Tensor, warmup: int, repeats: int
) -> list[Record]:
    """One transformer forward (teacher, student) and the ArcFlow-specific work of a step, timed
    round-robin after a warm-up so that all of them meet the same background load."""
    device, arch = noise.device, student.arch.name
    sigma = torch.ones(noise.shape[0], device=device)
    # One forward of the base: FLUX embeds its guidance; Qwen-Image's CFG would double it.
    single = 1.0 if student.arch.true_cfg else None
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

    ``model``/``adapter`` default to the shipped tiny stack of ``arch`` (checkpoints/tiny-*
    under the current folder); image size and text length default to the model folder's
    sampling defaults, else 1024 and 512.
    """
    from arcflow.pipelines.loading import SPECS, load_measured_pipeline

    pipe, default_size, max_length = load_measured_pipeline(
        SPECS[arch], model, adapter, dtype, str(device)
    )
    pipe.set_progress_bar_config(disable=True)
    size = size or default_size

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
