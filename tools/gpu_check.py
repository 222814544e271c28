"""Full-size speed and memory of the ArcFlow students on one CUDA GPU, in one script.

    python tools/gpu_check.py                         # H100/H200, to work_dirs/gpu_check.jsonl
    python tools/gpu_check.py --scale tiny --device cpu      # the same code, tiny, on the CPU

Per architecture (FLUX.1-dev 12 B, then Qwen-Image 20 B), with random weights, which cost the same
time and memory as trained ones: the released student config (bf16 base, K = 16, LoRA rank 256,
fp32 trainable tensors), parameters built on the meta device and materialised on the GPU in place.
Sampling runs with the trainable tensors in the base's dtype, as the pipelines load an adapter;
training casts them back to float32 and applies the training runtime's attention backends
(``env_cfg.cudnn_attention``).

1. ``build``: parameter count, weight memory, build time.
2. ``loop/student``, ``loop/teacher``, ``loop/speedup``: the 2-NFE student against the 50-step
   teacher (Qwen-Image: true CFG, 100 forwards) at 1024 x 1024, same noise, same process, peak GPU
   memory of the transformer path (weights included); timing helpers of
   ``arcflow/evaluation/benchmark.py``.
   ``step/*``: one teacher and one student forward, the ArcFlow heads' and closed-form move's
   share of a forward, the cost of switching the shared transformer between its two roles.
3. ``train/iteration``: distiller iterations (the released settings: data-free rollout over 2
   segments, 4 intermediate states) at 1024 x 1024, batch 1, gradient checkpointing on, the
   released optimiser (8-bit AdamW where bitsandbytes is installed, else AdamW): the time of the
   last iteration (the first one warms up) and the peak memory. ``train/optimizer``: the
   optimiser's state memory against 32-bit AdamW's (8 bytes per trainable parameter).
4. ``loop/student_merged``, ``loop/speedup_merged``: the student loop again with its LoRA merged
   into the base weights (``--merge-lora`` of the inference scripts), against the same teacher.
5. ``loop/student_<scheme>``: the 2-NFE student loop on a base quantized with each scheme of
   ``--quantize`` that runs on the device (``arcflow/models/quantization.py``; CUDA: int8,
   float8 on compute capability >= 8.9, nf4 where bitsandbytes is installed, gguf Q8_0; CPU:
   int8, gguf), the heads and LoRA in the base dtype as the pipelines load them: time, peak
   memory of the transformer path (quantized weights included) and the weights' memory.

A measurement that cannot fit (weights larger than the free memory, or a CUDA out-of-memory) is
reported as ``status: skipped`` with the reason, and the script goes on. Every measurement is one
JSON line on stdout, also appended to ``--out``.

Measured on one H200 (2026-11-26, docs/benchmarks.md): 66 s in all, ~180-190 ms per teacher
forward at 1024 x 1024 for both models. ``--budget-s`` guards slower machines: it skips what
would start after that many seconds.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import warnings
from collections.abc import Iterator
from itertools import chain
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run from anywhere without an installed package

import arcflow.tinyworld.architectures  # noqa: E402, F401  (the "benchmark" size of --tiny)
from arcflow.errors import run_cli  # noqa: E402
from arcflow.evaluation.benchmark import (  # noqa: E402
    Record,
    bench_loop,
    bench_merged_loop,
    bench_step,
    emit,
    machine_info,
    markdown_table,
    peak_memory_mb,
    reset_peak_memory,
    synchronize,
    time_call,
)
from arcflow.evaluation.random_students import (  # noqa: E402
    RELEASED_STUDENT_CONFIGS,
    TEXT_LENGTHS,
    TINY_TEXT_LENGTHS,
    VAE_FACTOR,
    build_meta_student,
    materialize_,
    materialize_module_,
    parameter_bytes,
    random_cond,
    student_config,
)
from arcflow.flow.sampling import make_noise, sample_student  # noqa: E402
from arcflow.models import ArcFlowStudent, count_parameters  # noqa: E402
from arcflow.models.loading import build_transformer  # noqa: E402
from arcflow.models.quantization import (  # noqa: E402
    device_schemes,
    missing_package,
    quantize_in_memory,
)
from arcflow.pipelines.cli import DefaultsHelpFormatter  # noqa: E402

DISTILLER_CONFIG = REPO_ROOT / "configs/_base_/models/arcflow_distiller.py"
SCHEDULE_CONFIG = REPO_ROOT / "configs/_base_/schedules/distill.py"
RUNTIME_CONFIG = REPO_ROOT / "configs/_base_/runtime/default.py"
ARCHS = ("flux", "qwen_image", "flux2_klein")
# Bytes per trainable parameter in training: fp32 weight and gradient, AdamW's two fp32 moments.
TRAIN_BYTES_PER_TRAINABLE = 16


def free_memory_bytes(device: torch.device) -> int | None:
    """Free accelerator memory (None on the CPU: no pre-check there)."""
    if device.type != "cuda":
        return None
    return torch.cuda.mem_get_info(device)[0]


def skipped(name: str, arch: str, reason: str) -> Record:
    return {"name": name, "arch": arch, "status": "skipped", "reason": reason}


def build_distiller(student: ArcFlowStudent, latent_side: int, device: torch.device):
    """The released distiller around ``student`` and its released optimiser wrapper."""
    from mmengine.config import Config

    import arcflow.registry  # noqa: F401  (registers the optimiser wrapper and its constructor)
    from arcflow.engine.optim import ArcFlowOptimWrapperConstructor
    from arcflow.models.distiller import ArcFlowDistiller

    model_cfg = Config.fromfile(str(DISTILLER_CONFIG)).model.to_dict()
    model_cfg.pop("type")
    model_cfg["latent_size"] = (latent_side, latent_side)
    distiller = ArcFlowDistiller(student, **model_cfg)
    distiller.to(device)  # also points the data preprocessor at the device
    distiller.train()
    wrapper_cfg = Config.fromfile(str(SCHEDULE_CONFIG)).optim_wrapper.to_dict()
    wrapper_cfg.pop("constructor")
    paramwise_cfg = wrapper_cfg.pop("paramwise_cfg")
    optim_wrapper = ArcFlowOptimWrapperConstructor(wrapper_cfg, paramwise_cfg)(distiller)
    return distiller, optim_wrapper


def optimizer_record(arch: str, optimizer: torch.optim.Optimizer, trainable: int) -> Record:
    """The optimiser's state memory after training, beside what 32-bit AdamW would hold (two
    float32 moments per trainable parameter); why it is not the 8-bit one when it is not."""
    from arcflow.engine.optim import EIGHT_BIT_DEVICES, bitsandbytes_adamw

    state_bytes = sum(
        value.numel() * value.element_size()
        for state in optimizer.state.values()
        for value in state.values()
        if torch.is_tensor(value)
    )
    eight_bit = bitsandbytes_adamw()
    record = {
        "name": "train/optimizer",
        "arch": arch,
        "optimizer": type(optimizer).__name__,
        "eight_bit": eight_bit is not None and isinstance(optimizer, eight_bit),
        "state_mb": round(state_bytes / 2**20, 1),
        "adamw_fp32_state_mb": round(8 * trainable / 2**20, 1),
    }
    if not record["eight_bit"]:
        record["reason"] = (
            "bitsandbytes is not installed"
            if eight_bit is None
            else f"8-bit AdamW is used on {sorted(EIGHT_BIT_DEVICES)} only"
        )
    return record


def bench_train(
    student: ArcFlowStudent,
    cond: dict[str, torch.Tensor],
    latent_side: int,
    device: torch.device,
    iterations: int,
) -> list[Record]:
    """``iterations`` distiller iterations; the last one's time and the peak memory, then the
    optimiser's state memory (:func:`optimizer_record`).

    The training runtime's attention backends apply during them only, so that they do not change
    the sampling measured after them (cuDNN's attention is the faster forward where it works).
    """
    from mmengine.config import Config

    from arcflow.engine.runner import use_cudnn_attention

    distiller, optim_wrapper = build_distiller(student, latent_side, device)
    reset_peak_memory(device)
    times, losses = [], []
    sampling_cudnn = torch.backends.cuda.cudnn_sdp_enabled()
    use_cudnn_attention(Config.fromfile(str(RUNTIME_CONFIG)).env_cfg.cudnn_attention)
    try:
        for _ in range(iterations):
            start = time.perf_counter()
            log_vars = distiller.train_step(dict(cond), optim_wrapper)
            synchronize(device)
            times.append(time.perf_counter() - start)
            losses.append(float(log_vars["loss"]))
    finally:
        use_cudnn_attention(sampling_cudnn)
    record = {
        "name": "train/iteration",
        "arch": student.arch.name,
        "median_ms": round(times[-1] * 1e3, 3),
        "runs_ms": [round(t * 1e3, 3) for t in times],
        "peak_mem_mb": round(peak_memory_mb(device)),
        "optimizer": type(optim_wrapper.optimizer).__name__,
        "gradient_checkpointing": bool(student.transformer.is_gradient_checkpointing),
        "loss": losses[-1],
    }
    trainable = sum(p.numel() for _, p in student.trainable_named_parameters())
    state = optimizer_record(student.arch.name, optim_wrapper.optimizer, trainable)
    del distiller, optim_wrapper
    student.zero_grad(set_to_none=True)
    return [record, state]


def check_arch(arch: str, args: argparse.Namespace, device: torch.device, t0: float):
    """Yield the records of one architecture; skips are records too."""
    tiny = args.scale == "tiny"
    dtype = getattr(torch, args.dtype)
    config = REPO_ROOT / RELEASED_STUDENT_CONFIGS[arch]
    cfg = student_config(config, tiny, dtype, gradient_checkpointing=True)
    start = time.perf_counter()
    student = build_meta_student(cfg)
    weights = parameter_bytes(student)
    counts = count_parameters(student)
    free = free_memory_bytes(device)
    if free is not None and weights > 0.95 * free:
        yield skipped(
            "build", arch, f"weights {weights / 2**30:.1f} GiB > free {free / 2**30:.1f} GiB"
        )
        return
    materialize_(student, device)
    student.eval()
    yield {
        "name": "build",
        "arch": arch,
        "params": counts.total,
        "trainable_params": counts.trainable,
        "weights_mb": round(weights / 2**20),
        "build_s": round(time.perf_counter() - start, 1),
        "dtype": args.dtype,
        "trainable_dtype": {"sampling": args.dtype, "training": cfg["trainable_dtype"]},
        "lora_rank": student.lora_rank,
        "num_components": student.num_components,
    }
    student.set_trainable_dtype(dtype)  # sampling: as load_arcflow_adapter gives the student

    lengths = (TINY_TEXT_LENGTHS if tiny else TEXT_LENGTHS)[arch]
    cond = random_cond(student, 1, lengths, device)
    side = args.resolution // VAE_FACTOR
    noise = make_noise(1, student.latent_channels, side, side, device=device)
    loops = None  # the loop records, whose teacher the merged student's loop is compared to
    try:
        if time.perf_counter() - t0 > args.budget_s:
            yield skipped("loop", arch, f"time budget of {args.budget_s} s spent")
        else:
            loops = bench_loop(
                student, cond, noise, args.nfe, args.teacher_steps, 1, args.repeats, 1
            )
            yield from loops
            yield from bench_step(student, cond, noise, 1, args.repeats)
    except torch.OutOfMemoryError as error:
        yield skipped("loop", arch, f"out of memory: {str(error).splitlines()[0]}")

    need = weights + TRAIN_BYTES_PER_TRAINABLE * counts.trainable
    free = free_memory_bytes(device)
    try:
        if time.perf_counter() - t0 > args.budget_s:
            yield skipped("train/iteration", arch, f"time budget of {args.budget_s} s spent")
        elif free is not None and need - weights > 0.95 * free:
            yield skipped(
                "train/iteration",
                arch,
                f"needs ~{need / 2**30:.1f} GiB before activations, {free / 2**30:.1f} GiB free "
                "beside the weights",
            )
        else:
            student.set_trainable_dtype(cfg["trainable_dtype"])
            yield from bench_train(student, cond, side, device, args.train_iters)
    except torch.OutOfMemoryError as error:
        yield skipped("train/iteration", arch, f"out of memory: {str(error).splitlines()[0]}")

    try:  # last: merging the LoRA removes the teacher
        if loops is not None:
            student.set_trainable_dtype(dtype)
            yield from bench_merged_loop(student, cond, noise, args.nfe, 1, args.repeats, loops)
    except torch.OutOfMemoryError as error:
        yield skipped("loop/student_merged", arch, f"out of memory: {str(error).splitlines()[0]}")
    finally:
        del student, cond, noise
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()


def quantized_student(
    arch: str, args: argparse.Namespace, scheme: str, device: torch.device
) -> ArcFlowStudent:
    """The released student config on a random base quantized with ``scheme`` (built on the
    meta device, materialised on ``device``, then quantized), sampling dtypes."""
    from accelerate import init_empty_weights

    dtype = getattr(torch, args.dtype)
    cfg = student_config(REPO_ROOT / RELEASED_STUDENT_CONFIGS[arch], args.scale == "tiny", dtype)
    cfg.pop("arch")
    architecture = cfg.pop("transformer")["from_config"]
    with init_empty_weights(include_buffers=False):  # RoPE tables stay real (see random_students)
        base = build_transformer(arch, architecture, "cpu", dtype)
    base = quantize_in_memory(materialize_module_(base, device), scheme, dtype, device)
    with warnings.catch_warnings():
        # peft cannot merge a LoRA into a torchao base quantized outside diffusers' loader and
        # says so; merging is refused on any quantized base anyway.
        warnings.filterwarnings("ignore", "TorchaoLoraLinear was instantiated", UserWarning)
        student = ArcFlowStudent(base, arch, **cfg).eval()
    student.set_trainable_dtype(dtype)  # as load_arcflow_adapter gives the student
    return student


def quantized_loop(
    arch: str, args: argparse.Namespace, scheme: str, device: torch.device
) -> Record:
    """The ``loop/student_<scheme>`` record: 2-NFE student loop on the quantized base."""
    student = quantized_student(arch, args, scheme, device)
    weights = torch.cuda.memory_allocated(device) / 2**20 if device.type == "cuda" else None
    lengths = (TINY_TEXT_LENGTHS if args.scale == "tiny" else TEXT_LENGTHS)[arch]
    cond = random_cond(student, 1, lengths, device)
    side = args.resolution // VAE_FACTOR
    noise = make_noise(1, student.latent_channels, side, side, device=device)
    reset_peak_memory(device)
    timing = time_call(
        lambda: sample_student(student, noise, cond, args.nfe), device, 1, args.repeats
    )
    return {
        "name": f"loop/student_{scheme}",
        "arch": arch,
        "scheme": scheme,
        "forwards": args.nfe,
        "median_ms": round(timing.median_s * 1e3, 3),
        "runs_ms": [round(t * 1e3, 3) for t in timing.runs_s],
        "peak_mem_mb": round(peak_memory_mb(device)),
        "weights_mb": None if weights is None else round(weights),
    }


def bench_quantized(
    arch: str, args: argparse.Namespace, device: torch.device, t0: float
) -> Iterator[Record]:
    """``loop/student_<scheme>`` for each scheme that runs on ``device``; skips are records."""
    for scheme in [s for s in device_schemes(device) if s != "none"]:
        name = f"loop/student_{scheme}"
        missing = missing_package(scheme)
        if missing:
            yield skipped(name, arch, missing)
        elif time.perf_counter() - t0 > args.budget_s:
            yield skipped(name, arch, f"time budget of {args.budget_s} s spent")
        else:
            try:
                yield quantized_loop(arch, args, scheme, device)
            except torch.OutOfMemoryError as error:
                yield skipped(name, arch, f"out of memory: {str(error).splitlines()[0]}")
            finally:
                gc.collect()
                if device.type == "cuda":
                    torch.cuda.empty_cache()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=DefaultsHelpFormatter
    )
    parser.add_argument("--scale", choices=("full", "tiny"), default="full")
    parser.add_argument("--archs", nargs="+", choices=ARCHS, default=list(ARCHS))
    parser.add_argument("--device", help="default: cuda (full), cpu (tiny)")
    parser.add_argument("--resolution", type=int, help="pixels per side (full 1024, tiny 64)")
    parser.add_argument(
        "--dtype", default="bfloat16", help="base weights (trainable tensors stay float32)"
    )
    parser.add_argument("--nfe", type=int, default=2)
    parser.add_argument("--teacher-steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3, help="timed student loops")
    parser.add_argument("--train-iters", type=int, default=2, help="the first one warms up")
    parser.add_argument("--budget-s", type=float, default=420.0)
    parser.add_argument("--out", type=Path, default=Path("work_dirs/gpu_check.jsonl"))
    args = parser.parse_args(argv)
    args.device = args.device or ("cpu" if args.scale == "tiny" else "cuda")
    args.resolution = args.resolution or (64 if args.scale == "tiny" else 1024)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("no CUDA device: run on a GPU machine, or use --scale tiny --device cpu")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    t0 = time.perf_counter()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    records = []
    with args.out.open("a") as out:
        emit({**machine_info(device), "scale": args.scale, "resolution": args.resolution}, out)
        for arch in args.archs:
            # Streamed, one line as each measurement ends; the float student is freed first.
            float_rows = check_arch(arch, args, device, t0)
            for record in chain(float_rows, bench_quantized(arch, args, device, t0)):
                emit(record, out)
                records.append(record)
        emit({"name": "total", "wall_s": round(time.perf_counter() - t0, 1)}, out)
    print(markdown_table(records))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
