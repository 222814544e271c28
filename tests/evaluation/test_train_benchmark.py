"""``tools/benchmark.py --train``: distillation iterations of a config, timed and split by phase."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "checkpoints" / "tiny-flux"


@pytest.mark.skipif(not STACK.is_dir(), reason="checkpoints/tiny-flux is not built")
def test_train_benchmark_times_both_variants_and_splits_them(tmp_path):
    out = tmp_path / "train.jsonl"
    cmd = [sys.executable, "tools/benchmark.py", "--train", "configs/tiny/arcflow_tiny_flux.py"]
    # eager and a small batch keep the test to seconds; the variants still differ in dtype
    cmd += ["--cfg-options", "model.compile=False", "train_dataloader.batch_size=2"]
    cmd += ["--warmup", "1", "--repeats", "2", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    records = {r["name"]: r for r in map(json.loads, out.read_text().splitlines())}
    eager, config = records["train/float32-eager"], records["train/config"]
    assert eager["overrides"]["model.student.transformer.torch_dtype"] == "float32"
    for record in (eager, config):
        assert len(record["runs_ms"]) == 2
        phases = record["phases_ms"]
        # every phase ran, and the phases account for the iteration (other >= 0 by construction)
        assert all(phases[p] > 0 for p in ("teacher", "student_forward", "backward", "optimizer"))
        assert sum(phases.values()) == pytest.approx(record["median_ms"], rel=0.05, abs=2.0)
    ratio = records["train/speedup/config"]["ratio"]
    assert ratio == pytest.approx(eager["median_ms"] / config["median_ms"], rel=0.02)
    assert "| float32-eager |" in result.stdout and "| config |" in result.stdout
