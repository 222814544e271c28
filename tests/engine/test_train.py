"""tools/train.py end to end on the CI config: logs, checkpoints, resume, DDP and FSDP on 2 CPU
ranks, config typos."""

import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from arcflow.engine.launch import ConfigError, prepare_config
from tests.engine.conftest import (
    CONFIG,
    ENV,
    FSDP,
    ROOT,
    assert_same_losses,
    assert_same_tensors,
    logged,
    train,
)


def test_run_logs_checkpoints_and_keeps_only_trainable_tensors(uninterrupted):
    rows = logged(uninterrupted)
    assert sorted(rows) == [1, 2, 3, 4, 5, 6]
    for key in ("loss", "teacher_ratio", "lr", "grad_norm", "it_per_s", "peak_mem_mb"):
        assert key in rows[6], key
    assert rows[1]["teacher_ratio"] == 1.0 and rows[6]["teacher_ratio"] == 0.0
    events = list(uninterrupted.glob("*/vis_data/events.out.tfevents.*"))
    assert events, "no TensorBoard log"
    board = EventAccumulator(str(events[0]))
    board.Reload()
    assert {"loss", "teacher_ratio", "grad_norm", "lr", "it_per_s"} <= set(board.Tags()["scalars"])
    # the validation grid: before training and every 3 iterations
    assert [e.step for e in board.Images("val/samples")] == [0, 3, 6]

    checkpoints = uninterrupted / "checkpoints"
    assert (checkpoints / "latest").read_text() == "iter_000006"
    assert sorted(p.name for p in checkpoints.glob("iter_*")) == ["iter_000004", "iter_000006"]
    trainable = load_file(str(checkpoints / "iter_000006" / "trainable.safetensors"))
    ema = load_file(str(checkpoints / "iter_000006" / "ema.safetensors"))
    assert set(trainable) == set(ema)
    for name in trainable:
        assert any(part in name for part in ("lora_", "proj_out.", "norm_out.linear")), name
    assert not any("teacher_proj" in name for name in trainable)
    assert not list(checkpoints.glob(".tmp*")), "a temporary checkpoint folder was left behind"


def test_interrupted_run_resumes_with_identical_losses(uninterrupted, embeddings, tmp_path):
    train(tmp_path, embeddings, "train_cfg.max_iters=3")  # stops after 3 of the 6 iterations
    assert (tmp_path / "checkpoints" / "latest").read_text() == "iter_000003"
    train(tmp_path, embeddings)  # the same command again: continues from iteration 3
    assert_same_losses(logged(tmp_path), logged(uninterrupted), 6, rel=1e-6)
    assert_same_tensors(tmp_path, uninterrupted, 6, "trainable.safetensors", rtol=1e-5)


def test_two_rank_gloo_ddp_with_resume(ddp_two_rank):
    rows = logged(ddp_two_rank)
    assert sorted(rows) == [1, 2, 3, 4]
    assert (ddp_two_rank / "checkpoints" / "latest").read_text() == "iter_000004"


def test_two_rank_fsdp_matches_ddp_and_saves_unsharded_tensors(
    fsdp_two_rank, ddp_two_rank, uninterrupted
):
    # The same maths as DDP, not the same float operations: the segments' gradients are
    # accumulated, divided by the world size and reduced (all-reduce vs reduce-scatter) in other
    # orders. The rounding differences (measured: 1e-7 relative after four Adam steps) stay far
    # below 1e-5.
    assert_same_losses(logged(fsdp_two_rank), logged(ddp_two_rank), 4, rel=1e-5)
    assert_same_tensors(fsdp_two_rank, ddp_two_rank, 4, "trainable.safetensors", rtol=1e-5)
    assert_same_tensors(fsdp_two_rank, ddp_two_rank, 4, "ema.safetensors", rtol=1e-5)
    # The names and shapes of a single-process run: whole tensors, trainable ones only.
    checkpoint = fsdp_two_rank / "checkpoints" / "iter_000004"
    single = uninterrupted / "checkpoints" / "iter_000004"
    for name in ("trainable.safetensors", "ema.safetensors"):
        sharded_run, single_run = load_file(str(checkpoint / name)), load_file(str(single / name))
        assert {k: v.shape for k, v in sharded_run.items()} == {
            k: v.shape for k, v in single_run.items()
        }
        assert not any("teacher_proj" in key for key in sharded_run)


def test_two_rank_fsdp_resumes_with_identical_losses(fsdp_two_rank, embeddings, tmp_path):
    train(tmp_path, embeddings, FSDP, "train_cfg.max_iters=2", nproc=2)
    assert (tmp_path / "checkpoints" / "latest").read_text() == "iter_000002"
    train(tmp_path, embeddings, FSDP, "train_cfg.max_iters=4", nproc=2)
    assert_same_losses(logged(tmp_path), logged(fsdp_two_rank), 4, rel=1e-6)
    assert_same_tensors(tmp_path, fsdp_two_rank, 4, "trainable.safetensors", rtol=1e-5)


def test_ddp_checkpoint_resumes_under_fsdp(ddp_two_rank, fsdp_two_rank, embeddings, tmp_path):
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    shutil.copytree(ddp_two_rank / "checkpoints" / "iter_000002", checkpoints / "iter_000002")
    train(tmp_path, embeddings, FSDP, "train_cfg.max_iters=4", nproc=2)
    rows, reference = logged(tmp_path), logged(fsdp_two_rank)
    assert sorted(rows) == [3, 4]
    for it in (3, 4):
        for key in ("loss_seg0", "loss_seg1", "grad_norm"):
            assert rows[it][key] == pytest.approx(reference[it][key], rel=1e-5), (it, key)


def test_unknown_top_level_key_is_named():
    with pytest.raises(ConfigError, match="max_iter"):
        prepare_config(str(ROOT / CONFIG), cfg_options={"max_iter": 3})


def test_misspelt_model_argument_is_named():
    with pytest.raises(ConfigError, match="teacher_ratio_decy .did you mean 'teacher_ratio_decay'"):
        prepare_config(str(ROOT / CONFIG), cfg_options={"model.teacher_ratio_decy": 3})


def test_unknown_env_cfg_key_is_named():
    with pytest.raises(ConfigError, match="cudnn_atention"):
        prepare_config(str(ROOT / CONFIG), cfg_options={"env_cfg.cudnn_atention": False})


@pytest.mark.parametrize("enabled", [False, True])
def test_runner_applies_the_attention_backend_setting(enabled, tmp_path):
    """``env_cfg.cudnn_attention`` reaches torch's SDPA backend switch when the Runner starts
    (False by default: cuDNN's attention backward fails on FLUX.1-dev on an H200)."""
    from arcflow.engine.runner import ArcFlowRunner

    before = torch.backends.cuda.cudnn_sdp_enabled()
    options = {"env_cfg.cudnn_attention": True} if enabled else None  # None: the default
    cfg = prepare_config(str(ROOT / CONFIG), str(tmp_path), options, resume=False)
    assert cfg.env_cfg.get("cudnn_attention", False) is enabled
    torch.backends.cuda.enable_cudnn_sdp(not enabled)
    try:
        ArcFlowRunner.from_cfg(cfg)
        assert torch.backends.cuda.cudnn_sdp_enabled() is enabled
    finally:
        torch.backends.cuda.enable_cudnn_sdp(before)


def wandb_history(run: Path) -> list[dict]:
    """The ``wandb.log`` rows of an offline W&B run, read from its ``run-*.wandb`` file: a LevelDB
    style log (7-byte file header; 32 KiB blocks of records framed by a crc32, a length and a kind:
    1 whole, 2 first, 3 middle, 4 last piece) of protobuf ``Record`` messages. A logged image
    appears as nested keys: ``name/path``, ``name/_type``, ..."""
    from wandb.proto.wandb_internal_pb2 import Record

    (path,) = run.glob("run-*.wandb")
    raw = path.read_bytes()
    block, head = 32768, 7
    rows, pieces, pos = [], b"", head
    while pos + head <= len(raw):
        if block - pos % block < head:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", raw[pos : pos + head])
        pieces += raw[pos + head : pos + head + length]
        pos += head + length
        if kind in (1, 4):
            record = Record()
            record.ParseFromString(pieces)
            pieces = b""
            if record.WhichOneof("record_type") == "history":
                row = {}
                for item in record.history.item:
                    row[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
                rows.append(row)
    return rows


def test_wandb_base_config_logs_scalars_and_samples_offline(embeddings, tmp_path, monkeypatch):
    """The documented way to turn W&B on, adding the runtime piece to a config's ``_base_``, trains;
    without an API key the run is written offline under the run's folder, one row per iteration
    with the training scalars, and the validation grid as an image file."""
    config = tmp_path / "with_wandb.py"
    bases = [str(ROOT / CONFIG), str(ROOT / "configs/_base_/runtime/wandb.py")]
    config.write_text(f"_base_ = {bases!r}\n")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    train(tmp_path / "run", embeddings, "train_cfg.max_iters=2", config=config)
    (run,) = (tmp_path / "run").glob("*/vis_data/wandb/offline-run-*")
    rows = {row["_step"]: row for row in wandb_history(run)}
    assert sorted(rows) == [0, 1, 2]
    for key in ("loss", "loss_seg0", "lr", "grad_norm", "teacher_ratio", "it_per_s"):
        assert isinstance(rows[2][key], float), key
    assert rows[1]["teacher_ratio"] == 1.0 and rows[2]["teacher_ratio"] == 0.75
    assert rows[0]["val/samples/_type"] == "image-file"
    assert (run / "files" / rows[0]["val/samples/path"]).is_file()


@pytest.mark.parametrize(
    ("api_key", "mode", "expected"),
    [(None, None, "offline"), ("k", None, "online"), ("k", "offline", "offline")],
)
def test_wandb_mode_follows_the_environment(api_key, mode, expected, monkeypatch):
    from arcflow.engine.vis_backends import wandb_mode

    for name, value in (("WANDB_API_KEY", api_key), ("WANDB_MODE", mode)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert wandb_mode() == expected


# LoRA dropout off: its masks come from torch's global generator, drawn per forward, so they
# depend on how a batch is split (with it, accumulation equals the whole batch in distribution).
BATCH_OF_4 = ("train_dataloader.batch_size=4", "model.student.lora_dropout=0.0")
TWO_MICRO_BATCHES = "model.micro_batch_size=2"


def test_two_accumulated_micro_batches_equal_one_batch_of_four(embeddings, tmp_path):
    """Gradient accumulation: 2 micro-batches of 2 give the step a batch of 4 gives, so the
    losses, gradient norms and trained tensors agree up to float rounding (measured: gradients
    within 1e-6 relative)."""
    whole, accumulated = tmp_path / "whole", tmp_path / "accumulated"
    train(whole, embeddings, *BATCH_OF_4, "train_cfg.max_iters=4")
    train(accumulated, embeddings, *BATCH_OF_4, TWO_MICRO_BATCHES, "train_cfg.max_iters=4")
    assert_same_losses(logged(accumulated), logged(whole), 4, rel=1e-5)
    assert_same_tensors(accumulated, whole, 4, "trainable.safetensors", rtol=1e-5)


def test_accumulation_under_ddp_equals_whole_batches_and_resumes(embeddings, tmp_path):
    """The same on 2 gloo ranks (a batch of 4 per rank), the accumulated run interrupted after
    2 iterations and resumed by the same command."""
    whole, accumulated = tmp_path / "whole", tmp_path / "accumulated"
    train(whole, embeddings, *BATCH_OF_4, "train_cfg.max_iters=4", nproc=2)
    for iterations in (2, 4):
        options = (*BATCH_OF_4, TWO_MICRO_BATCHES, f"train_cfg.max_iters={iterations}")
        train(accumulated, embeddings, *options, nproc=2)
    assert_same_losses(logged(accumulated), logged(whole), 4, rel=1e-5)
    assert_same_tensors(accumulated, whole, 4, "trainable.safetensors", rtol=1e-5)


def test_tiny_data_variant_trains(tmp_path):
    """configs/tiny/arcflow_tiny_flux_data.py: the data variant on latents of the tiny VAE's
    scenes, one random segment per iteration."""
    cmd = [sys.executable, "tools/train.py", "configs/tiny/arcflow_tiny_flux_data.py"]
    cmd += ["--work-dir", str(tmp_path), "--cfg-options", "train_cfg.max_iters=3"]
    # eager: compiling (tested in tests/models/test_distiller.py) would cost more than the run
    cmd += ["default_hooks.logger.interval=1", "model.compile=False"]
    cmd += ["train_dataloader.batch_size=4", "train_dataloader.dataset.size=16"]
    cmd += [f"train_dataloader.dataset.cache_dir={tmp_path / 'latents'}"]
    result = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = logged(tmp_path)
    assert sorted(rows) == [1, 2, 3]
    for row in rows.values():
        # One segment an iteration, weight 1: the loss is that segment's.
        assert "loss_seg1" not in row and row["loss"] == pytest.approx(row["loss_seg0"])
        assert 0 < row["loss"] < float("inf") and row["grad_norm"] > 0
    assert list((tmp_path / "latents").glob("*.safetensors")), "the scenes were not encoded"
