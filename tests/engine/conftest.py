"""The end-to-end training tests' shared parts: ``tools/train.py`` on the CI config, in a
subprocess (one process or torchrun) or in this process, what its runs logged and saved, a prompt
cache and one uninterrupted run built once per session."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from arcflow.data.cache_builder import write_index
from arcflow.data.prompt_cache import FORMAT, VERSION, save_shard, shard_name

ROOT = Path(__file__).resolve().parents[2]
CONFIG = "configs/tiny/arcflow_ci_flux.py"
FSDP = "model_wrapper_cfg.type=ArcFlowFSDP"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def train_command(
    work_dir: Path,
    embeddings: Path,
    *options: str,
    nproc: int = 1,
    args: tuple = (),
    config: str | Path = CONFIG,
) -> list[str]:
    options = (f"train_dataloader.dataset.path={embeddings}", *options)
    if nproc == 1:
        cmd = [sys.executable, "tools/train.py", str(config)]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        cmd += [f"--nproc_per_node={nproc}", "tools/train.py", str(config), "--launcher", "pytorch"]
    return [*cmd, *args, "--work-dir", str(work_dir), "--cfg-options", *options]


def train(
    work_dir: Path,
    embeddings: Path,
    *options: str,
    nproc: int = 1,
    args: tuple = (),
    expect: int = 0,
    config: str | Path = CONFIG,
) -> subprocess.CompletedProcess:
    """Run tools/train.py to its end and check its exit code."""
    cmd = train_command(work_dir, embeddings, *options, nproc=nproc, args=args, config=config)
    result = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == expect, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def train_in_process(argv: list[str]) -> int:
    """tools/train.py's command line run in this process; returns its exit code."""
    from arcflow.errors import run_cli

    spec = importlib.util.spec_from_file_location("train_tool", ROOT / "tools" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return run_cli(module.main, argv)


def logged(work_dir: Path) -> dict[int, dict]:
    """Per-iteration scalars of every run in ``work_dir`` (a resumed run appends its own file)."""
    rows = {}
    for path in sorted(work_dir.glob("*/vis_data/scalars.json")):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            rows[row["iter"]] = row
    return rows


def assert_same_losses(rows: dict, reference: dict, iterations: int, rel: float) -> None:
    assert sorted(rows) == list(range(1, iterations + 1))
    for it in range(1, iterations + 1):
        for key in ("loss_seg0", "loss_seg1", "grad_norm", "lr", "base_lr"):
            assert rows[it][key] == pytest.approx(reference[it][key], rel=rel, abs=1e-9), (it, key)


def assert_same_tensors(
    work_dir: Path, reference: Path, iteration: int, name: str, rtol: float
) -> None:
    final = load_file(str(work_dir / "checkpoints" / f"iter_{iteration:06d}" / name))
    expected = load_file(str(reference / "checkpoints" / f"iter_{iteration:06d}" / name))
    assert set(final) == set(expected)
    for key, tensor in expected.items():
        torch.testing.assert_close(final[key], tensor, rtol=rtol, atol=1e-7, msg=key)


@pytest.fixture(scope="session")
def embeddings(tmp_path_factory):
    """A prompt cache of 8 random FLUX-shaped prompts (T5 length <= 6, width 32), half of them
    asking for the 24x40 bucket."""
    root = tmp_path_factory.mktemp("data")
    g = torch.Generator().manual_seed(0)
    n = 8
    keys = {
        "prompt_embeds": {"sequence": True, "mask": False, "pad_to": 6},
        "pooled_prompt_embeds": {"sequence": False, "mask": False, "pad_to": None},
    }
    lengths = torch.randint(2, 7, (n,), generator=g).tolist()
    rows = {
        "prompt_embeds": [torch.randn(length, 32, generator=g) for length in lengths],
        "pooled_prompt_embeds": [torch.randn(32, generator=g) for _ in range(n)],
    }
    prompts = [f"prompt {i}" for i in range(n)]
    save_shard(root / shard_name(0), rows, keys, "bfloat16", prompts, [None, (24, 40)] * 4)
    plan = dict(format=FORMAT, version=VERSION, storage="bfloat16", keys=keys, shared=None)
    write_index(root, {**plan, "num_prompts": n, "skipped_empty": 0}, [n])
    return root


@pytest.fixture(scope="session")
def uninterrupted(tmp_path_factory, embeddings):
    """The CI config's 6 iterations in one process, without interruption."""
    work_dir = tmp_path_factory.mktemp("full")
    train(work_dir, embeddings)
    return work_dir


@pytest.fixture(scope="session")
def ddp_two_rank(tmp_path_factory, embeddings):
    """2-rank DDP: 1 iteration, then the same command resumed to 4. The ranks' batches differ in
    shape after one iteration, so the resume restores each rank's own RNG state (test_train
    compares this run with an uninterrupted FSDP one)."""
    work_dir = tmp_path_factory.mktemp("ddp")
    train(work_dir, embeddings, "train_cfg.max_iters=1", nproc=2)
    train(work_dir, embeddings, "train_cfg.max_iters=4", nproc=2)
    return work_dir


@pytest.fixture(scope="session")
def fsdp_two_rank(tmp_path_factory, embeddings):
    """2-rank FSDP, 4 iterations without interruption."""
    work_dir = tmp_path_factory.mktemp("fsdp")
    train(work_dir, embeddings, FSDP, "train_cfg.max_iters=4", nproc=2)
    return work_dir
