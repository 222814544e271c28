"""The tiny world's distillation trains from a prompt cache made by tools/cache_prompts.py."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "checkpoints" / "tiny-flux" / "transformer"


def run(*cmd: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, *cmd], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.skipif(not STACK.is_dir(), reason="checkpoints/tiny-flux is not built")
def test_tiny_flux_distills_from_a_prompt_cache(tmp_path):
    prompts = (ROOT / "data/prompts/tiny_scenes.txt").read_text().splitlines()[:64]
    (tmp_path / "prompts.txt").write_text("\n".join(prompts) + "\n")
    cache = tmp_path / "cache"
    run(
        "tools/cache_prompts.py", "configs/tiny/arcflow_tiny_flux.py",
        "--prompts", str(tmp_path / "prompts.txt"), "--out", str(cache),
    )  # fmt: skip
    assert json.loads((cache / "index.json").read_text())["num_prompts"] == 64
    work = tmp_path / "run"
    run(
        "tools/train.py", "configs/tiny/arcflow_tiny_flux_cached.py", "--work-dir", str(work),
        "--cfg-options", f"train_dataloader.dataset.path={cache}", "train_cfg.max_iters=3",
        "model.compile=False", "train_dataloader.batch_size=4", "default_hooks.logger.interval=1",
    )  # fmt: skip
    rows = [
        json.loads(line)
        for path in work.glob("*/vis_data/scalars.json")
        for line in path.read_text().splitlines()
    ]
    assert [r["iter"] for r in rows if "loss" in r] == [1, 2, 3]
    assert (work / "checkpoints" / "latest").read_text() == "iter_000003"
