"""tools/gpu_check.py runs at tiny size on the CPU, so the GPU script cannot rot between runs."""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_tiny_scale_runs_every_measurement(gpu_check, tmp_path):
    out = tmp_path / "gpu_check.jsonl"
    argv = ["--scale", "tiny", "--teacher-steps", "3", "--repeats", "1", "--out", str(out)]
    assert gpu_check.main(argv) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    names = [(r.get("arch"), r["name"]) for r in records]
    for arch in ("flux", "qwen_image", "flux2_klein"):
        for name in (
            "build",
            "loop/student",
            "loop/teacher",
            "loop/speedup",
            "train/iteration",
            "train/optimizer",
            "loop/student_merged",
            "loop/speedup_merged",
            "loop/student_int8",  # the quantized bases that run on a CPU
            "loop/student_gguf",
        ):
            assert (arch, name) in names, (arch, name)
    assert not [r for r in records if r.get("status") == "skipped"]
    train = [r for r in records if r["name"] == "train/iteration"]
    for record in train:
        assert record["gradient_checkpointing"] and len(record["runs_ms"]) == 2
        assert record["loss"] == record["loss"]  # finite, not NaN
    for record in (r for r in records if r["name"] == "train/optimizer"):
        # On the CPU the optimiser is 32-bit AdamW: its state is the two float32 moments.
        assert not record["eight_bit"] and record["reason"]
        assert record["state_mb"] == pytest.approx(record["adamw_fp32_state_mb"], rel=0.01)
    for record in (r for r in records if r.get("scheme")):
        assert record["forwards"] == 2 and record["peak_mem_mb"] > 0 and record["median_ms"] > 0
    build = next(r for r in records if r["name"] == "build")
    assert build["num_components"] == 16 and 0 < build["trainable_params"] < build["params"]
    # The GPU run's dtypes: bf16 base; trainable tensors bf16 to sample (as the pipelines load
    # them), fp32 to train.
    assert build["dtype"] == "bfloat16"
    assert build["trainable_dtype"] == {"sampling": "bfloat16", "training": "float32"}
    assert records[0]["name"] == "machine" and records[-1]["name"] == "total"


def test_full_scale_refuses_without_cuda(gpu_check, monkeypatch):
    monkeypatch.setattr(gpu_check.torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit):
        gpu_check.parse_args([])
