"""tools/benchmark.py at tiny size on the CPU: timing helpers, random-weight builds
(arcflow/evaluation/benchmark.py, arcflow/evaluation/random_students.py), the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from arcflow.evaluation import benchmark, random_students

ROOT = Path(__file__).resolve().parents[2]
STUDENT_CONFIGS = {a: ROOT / f for a, f in random_students.RELEASED_STUDENT_CONFIGS.items()}


def test_time_call_takes_the_median_after_warmup():
    calls = []
    timing = benchmark.time_call(
        lambda: calls.append("run"), torch.device("cpu"), 2, 3, lambda: calls.append("warm")
    )
    assert calls == ["warm", "warm", "run", "run", "run"]
    assert len(timing.runs_s) == 3 and timing.median_s == sorted(timing.runs_s)[1]


def test_interleaved_timing_alternates_calls():
    calls = []
    timings = benchmark.time_interleaved(
        [lambda: calls.append("a"), lambda: calls.append("b")], [3, 1], torch.device("cpu")
    )
    assert calls == ["a", "b", "a", "a"]
    assert [len(t.runs_s) for t in timings] == [3, 1]


_PEAK_PROBE = """
import json, torch
from arcflow.evaluation import benchmark
cpu = torch.device("cpu")
benchmark.reset_peak_memory(cpu)
base = benchmark.peak_memory_mb(cpu)
block = torch.ones(256 * 2**20 // 4)  # 256 MiB, touched
grown = benchmark.peak_memory_mb(cpu)
del block
benchmark.reset_peak_memory(cpu)
print(json.dumps([base, grown, benchmark.peak_memory_mb(cpu)]))
"""


def test_peak_memory_is_reset_per_measurement():
    # In a fresh process: in the test session, memory that earlier tests freed but the allocator
    # kept resident can serve the block without raising the RSS peak.
    run = subprocess.run(
        [sys.executable, "-c", _PEAK_PROBE], capture_output=True, text=True, check=True
    )
    base, grown, after = json.loads(run.stdout.strip().splitlines()[-1])
    assert grown >= base + 240
    if benchmark._CLEAR_REFS.exists():
        assert after < grown - 200


@pytest.mark.parametrize("arch", ["flux", "qwen_image"])
def test_random_students_are_materialised_from_meta(arch):
    cfg = random_students.student_config(STUDENT_CONFIGS[arch], tiny=True, dtype=torch.float32)
    meta = random_students.build_meta_student(cfg)
    assert all(p.is_meta for p in meta.parameters())
    student = random_students.materialize_(meta, torch.device("cpu"))
    assert not any(p.is_meta for p in student.parameters())
    assert student.num_components == 16 and student.lora_rank == random_students.TINY_LORA_RANK
    # the student starts at its documented initialisation: LoRA B = 0, heads from the teacher
    lora_b = [layer.lora_B["default"].weight for layer in student.lora_layers().values()]
    assert lora_b and all(not w.detach().any() for w in lora_b)
    head = student.head
    k = head.num_components
    assert torch.equal(head.means.weight, head.teacher_proj.weight.repeat(k, 1))
    cond = random_students.random_cond(
        student.eval(), 1, random_students.TINY_TEXT_LENGTHS[arch], torch.device("cpu")
    )
    x = torch.randn(1, student.latent_channels, 4, 4)
    assert torch.isfinite(student.teacher_velocity(x, 1.0, cond)).all()
    assert random_students.teacher_forwards_per_step(student) == (2 if arch == "qwen_image" else 1)


@pytest.mark.parametrize("arch, trainable_b", [("flux", 0.65), ("qwen_image", 0.96)])
def test_full_size_students_build_on_meta_without_host_memory(arch, trainable_b):
    from arcflow.models import count_parameters

    cpu = torch.device("cpu")
    benchmark.reset_peak_memory(cpu)
    before = benchmark.peak_memory_mb(cpu)
    cfg = random_students.student_config(STUDENT_CONFIGS[arch], tiny=False, dtype=torch.bfloat16)
    student = random_students.build_meta_student(cfg)
    assert all(p.is_meta for p in student.parameters())
    assert count_parameters(student).trainable / 1e9 == pytest.approx(trainable_b, abs=0.01)
    assert student.num_components == 16 and student.lora_rank == 256
    # 12 B / 20 B parameters (25 / 42 GiB): none of them ever reaches host memory
    assert benchmark.peak_memory_mb(cpu) - before < 1024


def test_cli_writes_json_lines_and_a_table(bench_tool, tmp_path):
    out, table = tmp_path / "bench.jsonl", tmp_path / "bench.md"
    argv = ["--tiny", "--archs", "qwen", "--resolution", "32", "--teacher-steps", "3"]
    argv += ["--repeats", "1", "--warmup", "1", "--out", str(out), "--markdown", str(table)]
    assert bench_tool.main(argv) == 0
    records = {r["name"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert records["machine"]["torch"] == torch.__version__ and records["machine"]["cpu"]
    student, teacher = records["loop/student"], records["loop/teacher"]
    assert student["forwards"] == 2 and teacher["forwards"] == 6  # true CFG: 2 forwards a step
    assert teacher["per_forward_ms"] == pytest.approx(teacher["median_ms"] / 6, rel=0.01)
    assert records["loop/speedup"]["ratio"] == pytest.approx(
        teacher["median_ms"] / student["median_ms"], rel=0.01
    )
    assert records["step/overhead"]["ratio"] >= 0 and records["step/move"]["median_ms"] > 0
    assert "| qwen_image | loop/speedup |" in table.read_text()
    merged = records["loop/student_merged"]
    assert merged["forwards"] == 2 and records["loop/speedup_merged"]["ratio"] == pytest.approx(
        teacher["median_ms"] / merged["median_ms"], rel=0.01
    )


def test_full_size_needs_the_random_weights_flag(bench_tool):
    with pytest.raises(SystemExit):
        bench_tool.parse_args(["--full-size", "flux"])


@pytest.mark.slow
def test_pipeline_benchmark_on_a_tiny_stack(tiny_flux_stack):
    model, adapter = tiny_flux_stack
    records = benchmark.bench_pipeline(
        "flux", str(model), str(adapter), torch.device("cpu"), torch.float32, 64, 2, 2, 1, 1, 1
    )
    student, teacher, speedup = records
    assert [student["name"], teacher["name"], speedup["name"]] == [
        "pipeline/student",
        "pipeline/teacher",
        "pipeline/speedup",
    ]
    assert student["size"] == 64 and student["median_ms"] > 0 and speedup["ratio"] > 0
