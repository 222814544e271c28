"""Training on a cluster: each fault is injected into a real run of the CI config, then the test
checks that nothing was lost and what the user was told.

- a truncated newest checkpoint is named and skipped, none left is one error; --resume-from;
- a checkpoint write that runs out of space leaves the previous checkpoints and no partial folder;
  a write that fails on rank 0 ends every rank;
- SIGTERM / SIGINT / SIGUSR1 finish the iteration, checkpoint it and exit 75 (one process, FSDP
  with the signal reaching one rank only, two torchrun "nodes"); the rerun reproduces the
  uninterrupted run's losses;
- a checkpoint of another config is one error.
"""

from __future__ import annotations

import errno
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest

import arcflow.engine.checkpoint as checkpoint_module
from arcflow.engine.checkpoint_files import checkpoint_problem
from arcflow.engine.preemption import EXIT_RESUME, PreemptionGuard, parse_signal
from tests.engine.conftest import (
    CONFIG,
    ENV,
    FSDP,
    ROOT,
    assert_same_losses,
    assert_same_tensors,
    logged,
    train,
    train_command,
    train_in_process,
)


@pytest.fixture(autouse=True)
def restore_signal_handlers():
    """A run that fails inside this process leaves its stop-signal handlers installed."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


RUNS = itertools.count()


def argv(work_dir: Path, embeddings: Path, *options: str, args: tuple = ()) -> list[str]:
    """tools/train.py's arguments for a run of the CI config in ``work_dir``, in this process.

    Each run gets its own experiment name: mmengine names its logger and visualizer after the
    name and the start time in seconds, and a second run within the same second would write
    into the first one's (closed) log and folder."""
    options = (
        f"train_dataloader.dataset.path={embeddings}",
        f"experiment_name=run{next(RUNS)}",
        *options,
    )
    return [str(ROOT / CONFIG), *args, "--work-dir", str(work_dir), "--cfg-options", *options]


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def copy_checkpoints(source: Path, work_dir: Path) -> Path:
    target = work_dir / "checkpoints"
    shutil.copytree(source / "checkpoints", target)
    return target


def error_line(captured: str) -> str:
    """The one line a usage error prints (and nothing that looks like a traceback)."""
    assert "Traceback" not in captured, captured
    lines = captured.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured
    return lines[0]


# ---------------------------------------------------------------------------- integrity
@pytest.mark.slow
def test_truncated_newest_checkpoint_is_named_and_skipped(uninterrupted, embeddings, tmp_path):
    checkpoints = copy_checkpoints(uninterrupted, tmp_path)
    truncate(checkpoints / "iter_000006" / "trainable.safetensors")
    result = train(tmp_path, embeddings)
    skipped = [line for line in result.stdout.splitlines() if "skipping checkpoint" in line]
    assert len(skipped) == 1, result.stdout[-3000:]
    assert "iter_000006" in skipped[0] and "trainable.safetensors has" in skipped[0]
    assert "resumed from" in result.stdout and "iter_000004 at iteration 4" in result.stdout
    rows = logged(tmp_path)
    assert sorted(rows) == [5, 6]
    reference = logged(uninterrupted)
    for it in (5, 6):
        assert rows[it]["loss_seg0"] == pytest.approx(reference[it]["loss_seg0"], rel=1e-6)
    assert checkpoint_problem(checkpoints / "iter_000006") is None  # rewritten whole
    assert_same_tensors(tmp_path, uninterrupted, 6, "trainable.safetensors", rtol=1e-5)


def test_no_complete_checkpoint_is_one_error(uninterrupted, embeddings, tmp_path, capsys):
    checkpoints = copy_checkpoints(uninterrupted, tmp_path)
    truncate(checkpoints / "iter_000006" / "state.pt")
    (checkpoints / "iter_000004" / "manifest.json").unlink()
    (checkpoints / "iter_000004" / "state.pt").unlink()
    (checkpoints / "iter_000004" / "trainable.safetensors").unlink()
    (checkpoints / "iter_000004" / "ema.safetensors").unlink()
    assert train_in_process(argv(tmp_path, embeddings)) == 2
    line = error_line(capsys.readouterr().err)
    assert f"no complete checkpoint in {checkpoints}" in line
    assert "iter_000006: state.pt has" in line and "iter_000004: no manifest.json" in line
    assert "--no-resume" in line


def test_resume_from_picks_the_checkpoint(uninterrupted, embeddings, tmp_path):
    picked = uninterrupted / "checkpoints" / "iter_000004"
    run = argv(tmp_path, embeddings, "train_cfg.max_iters=5", args=("--resume-from", str(picked)))
    assert train_in_process(run) == 0
    rows, reference = logged(tmp_path), logged(uninterrupted)
    assert sorted(rows) == [5]
    assert rows[5]["loss_seg0"] == pytest.approx(reference[5]["loss_seg0"], rel=1e-6)

    # A run's checkpoint folder: its newest complete checkpoint, a broken newer one skipped.
    other = copy_checkpoints(uninterrupted, tmp_path / "other")
    truncate(other / "iter_000006" / "ema.safetensors")
    again = tmp_path / "again"
    run = argv(again, embeddings, "train_cfg.max_iters=5", args=("--resume-from", str(other)))
    assert train_in_process(run) == 0
    assert sorted(logged(again)) == [5]
    assert logged(again)[5]["loss_seg0"] == rows[5]["loss_seg0"]


def test_checkpoint_of_another_config_is_one_error(uninterrupted, embeddings, tmp_path, capsys):
    picked = uninterrupted / "checkpoints" / "iter_000004"
    options = ("model.student.lora_rank=2",)
    run = argv(tmp_path, embeddings, *options, args=("--resume-from", str(picked)))
    assert train_in_process(run) == 2
    line = error_line(capsys.readouterr().err)
    assert f"checkpoint {picked}" in line and "lora" in line
    assert "Resume with the config that wrote it" in line


# ---------------------------------------------------------------------------- write failures
def test_full_disk_keeps_previous_checkpoint(
    uninterrupted, embeddings, tmp_path, capsys, monkeypatch
):
    real_save_file = checkpoint_module.save_file

    def save_file(tensors, path):
        if ".tmp_iter_000004" in path:  # the disk fills up while the 2nd checkpoint is written
            Path(path).write_bytes(b"\0" * 64)
            raise OSError(errno.ENOSPC, "No space left on device", path)
        real_save_file(tensors, path)

    monkeypatch.setattr(checkpoint_module, "save_file", save_file)
    run = argv(tmp_path, embeddings, "train_cfg.max_iters=4")
    assert train_in_process(run) == 2
    line = error_line(capsys.readouterr().err)
    checkpoints = tmp_path / "checkpoints"
    assert f"could not write checkpoint {checkpoints / 'iter_000004'}" in line
    assert "No space left on device" in line and re.search(r"needs about \d+\.\d KiB", line)
    assert "previous checkpoints are untouched" in line
    assert sorted(p.name for p in checkpoints.iterdir()) == ["iter_000002", "latest"]
    assert checkpoint_problem(checkpoints / "iter_000002") is None

    monkeypatch.setattr(checkpoint_module, "save_file", real_save_file)  # space freed: rerun
    assert train_in_process(run) == 0
    assert_same_losses(logged(tmp_path), logged(uninterrupted), 4, rel=1e-6)


@pytest.mark.slow
def test_failed_write_on_rank_0_stops_every_rank(embeddings, tmp_path):
    """Rank 0 cannot create the checkpoint folder: both ranks end with the one error, no rank
    waits forever for the other."""
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    options = ("train_cfg.max_iters=2", f"checkpoint_dir={blocker / 'checkpoints'}")
    result = train(tmp_path, embeddings, *options, nproc=2, expect=1)  # torchrun: a rank failed
    assert result.stderr.count("error: could not write checkpoint") == 1
    assert f"{blocker / 'checkpoints' / 'iter_000002'} (Not a directory)" in result.stderr


# ---------------------------------------------------------------------------- preemption
def test_guard_records_the_first_signal_and_a_second_ctrl_c_interrupts():
    guard = PreemptionGuard("USR2")
    assert parse_signal("10") == signal.SIGUSR1 and signal.SIGUSR2 in guard.signals
    with pytest.raises(ValueError, match="unknown signal"):
        parse_signal("SIGNOPE")
    guard.install()
    try:
        os.kill(os.getpid(), signal.SIGUSR2)
        assert guard.received == "SIGUSR2"
        assert guard.received_on_any_rank() == "received SIGUSR2"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    finally:
        guard.uninstall()
    assert signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL


def start(cmd: list[str], log: Path) -> subprocess.Popen:
    """Start ``cmd`` with its output in ``log`` (a pipe left unread could block the run)."""
    with log.open("w") as stream:
        return subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=stream, stderr=subprocess.STDOUT)


def finish(process: subprocess.Popen, log: Path) -> str:
    process.wait(timeout=300)
    return log.read_text()


def wait_for_iteration(process: subprocess.Popen, work_dir: Path, iteration: int) -> None:
    deadline = time.monotonic() + 300
    while max(logged(work_dir), default=0) < iteration:
        assert process.poll() is None, f"the run ended with {process.returncode}"
        assert time.monotonic() < deadline, "the run did not reach the iteration"
        time.sleep(0.05)


def worker(launcher: subprocess.Popen, rank: int) -> psutil.Process:
    """torchrun's worker process of ``rank``."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for child in psutil.Process(launcher.pid).children(recursive=True):
            try:
                if child.environ().get("RANK") == str(rank):
                    return child
            except psutil.NoSuchProcess:
                continue
        time.sleep(0.1)
    raise AssertionError(f"no worker of rank {rank}")


def stopped_at(work_dir: Path) -> int:
    """The iteration of the checkpoint a stopped run left (checked complete)."""
    name = (work_dir / "checkpoints" / "latest").read_text()
    assert checkpoint_problem(work_dir / "checkpoints" / name) is None
    return int(name.removeprefix("iter_"))


def assert_stopped_and_resumes(work_dir, embeddings, uninterrupted, output, sig, after) -> None:
    """The run stopped after the iteration in progress with a complete checkpoint of it, said
    so, and the same command run again reproduces the uninterrupted run."""
    stop = stopped_at(work_dir)
    assert after <= stop < 6  # the iteration in progress finished; the run did not
    assert sorted(logged(work_dir)) == list(range(1, stop + 1))
    assert f"received {signal.Signals(sig).name}: stopping after iteration {stop}" in output
    assert train_in_process(argv(work_dir, embeddings)) == 0
    assert_same_losses(logged(work_dir), logged(uninterrupted), 6, rel=1e-6)
    assert_same_tensors(work_dir, uninterrupted, 6, "trainable.safetensors", rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("sig, after", [(signal.SIGTERM, 1), (signal.SIGUSR1, 3)])
def test_signal_to_a_training_process_checkpoints_and_exits_75(
    sig, after, uninterrupted, embeddings, tmp_path
):
    log = tmp_path / "run.log"
    process = start(train_command(tmp_path, embeddings), log)
    wait_for_iteration(process, tmp_path, after)
    process.send_signal(sig)
    output = finish(process, log)
    assert process.returncode == EXIT_RESUME, output[-3000:]
    assert_stopped_and_resumes(tmp_path, embeddings, uninterrupted, output, sig, after)


def test_ctrl_c_in_this_process_checkpoints(uninterrupted, embeddings, tmp_path, capsys):
    """SIGINT sent to this process from another thread while it trains."""

    def interrupt() -> None:
        while max(logged(tmp_path), default=0) < 2:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=interrupt, daemon=True)
    thread.start()
    assert train_in_process(argv(tmp_path, embeddings)) == EXIT_RESUME
    thread.join(timeout=60)
    output = capsys.readouterr().out
    assert_stopped_and_resumes(tmp_path, embeddings, uninterrupted, output, signal.SIGINT, 2)


@pytest.mark.slow
def test_fsdp_signal_to_one_rank_stops_both(fsdp_two_rank, embeddings, tmp_path):
    """SIGTERM reaches rank 1 only: both ranks stop after the same iteration and write one
    checkpoint together; the rerun gives the uninterrupted 2-rank losses."""
    options = (FSDP, "train_cfg.max_iters=4")
    cmd = train_command(tmp_path, embeddings, *options, nproc=2)
    log = tmp_path / "run.log"
    launcher = start(cmd, log)
    rank1 = worker(launcher, 1)
    wait_for_iteration(launcher, tmp_path, 1)
    rank1.send_signal(signal.SIGTERM)
    output = finish(launcher, log)
    assert re.search(rf"exitcode\s*:\s*{EXIT_RESUME}", output), output[-3000:]
    stop = stopped_at(tmp_path)
    assert 1 <= stop < 4
    # rank 0, which logs, learnt it from rank 1
    assert f"another rank received a stop signal: stopping after iteration {stop}" in output
    train(tmp_path, embeddings, *options, nproc=2)
    assert_same_losses(logged(tmp_path), logged(fsdp_two_rank), 4, rel=1e-6)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def two_nodes(work_dir: Path, embeddings: Path) -> list[subprocess.Popen]:
    """Two torchrun launchers (as on two machines) meeting at a c10d rendezvous on localhost,
    one gloo rank each."""
    cmd = train_command(work_dir, embeddings, "train_cfg.max_iters=4", nproc=2)
    launch = ["--nnodes=2", "--nproc_per_node=1", "--rdzv_backend=c10d"]
    launch += ["--signals-to-handle=SIGTERM,SIGINT,SIGUSR1"]  # as docs/training.md says
    launch += [f"--rdzv_endpoint=localhost:{free_port()}", f"--rdzv_id={work_dir.name}"]
    cmd = [*cmd[:3], *launch, *cmd[5:]]  # replace --standalone --nproc_per_node=2
    return [start(cmd, work_dir / f"node{node}.log") for node in range(2)]


@pytest.mark.slow
def test_two_nodes_train_are_preempted_and_resume(ddp_two_rank, embeddings, tmp_path):
    nodes = two_nodes(tmp_path, embeddings)
    wait_for_iteration(nodes[0], tmp_path, 1)
    for node in nodes:  # as SLURM's --signal warns every task of the job step
        node.send_signal(signal.SIGUSR1)
    outputs = [finish(node, tmp_path / f"node{i}.log") for i, node in enumerate(nodes)]
    assert all(node.returncode != 0 for node in nodes)  # torchrun reports its signal
    stop = stopped_at(tmp_path)
    assert 1 <= stop < 4
    assert any(f"received SIGUSR1: stopping after iteration {stop}" in out for out in outputs)
    nodes = two_nodes(tmp_path, embeddings)  # the same commands again
    outputs = [finish(node, tmp_path / f"node{i}.log") for i, node in enumerate(nodes)]
    assert_same_losses(logged(tmp_path), logged(ddp_two_rank), 4, rel=1e-6)
    assert checkpoint_problem(tmp_path / "checkpoints" / "iter_000004") is None
    # The run finished. Its launchers exit 0, except that gloo sometimes aborts a worker while
    # the interpreter exits after the last checkpoint (pytorch/pytorch#179291; tools/train.py
    # shuts the group down first, which makes it rare): seen here once in five runs, as torchrun's
    # "exitcode  : -6" report. Any other failure fails the test.
    for node, output in zip(nodes, outputs, strict=True):
        aborted_at_exit = re.search(r"exitcode\s*:\s*-6 .*\(SIGABRT\)", output)
        assert node.returncode == 0 or aborted_at_exit, output[-3000:]
