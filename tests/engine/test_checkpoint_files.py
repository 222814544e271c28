"""Checkpoint folders on disk: the manifest catches truncated, corrupt and incomplete folders,
the newest complete one is found, and a failed write leaves nothing behind."""

import errno
import os

import pytest
import torch
from safetensors.torch import save_file

from arcflow.engine.checkpoint_files import (
    MANIFEST,
    CheckpointError,
    CheckpointWriteError,
    checkpoint_problem,
    find_checkpoint,
    verify_checkpoint,
    write_checkpoint,
)


def write(root, step, **extra):
    tensors = {"w": torch.arange(1000, dtype=torch.float32) + step}
    writers = [
        ("trainable.safetensors", lambda p: save_file(tensors, str(p))),
        ("state.pt", lambda p: torch.save(dict(iteration=step, **extra), p)),
    ]
    return write_checkpoint(root / f"iter_{step:06d}", writers, needed_bytes=4000)


def truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_manifest_is_written_and_verifies(tmp_path):
    folder = write(tmp_path, 2)
    names = sorted(p.name for p in folder.iterdir())
    assert names == [MANIFEST, "state.pt", "trainable.safetensors"]
    assert checkpoint_problem(folder) is None
    assert not list(tmp_path.glob(".tmp*"))
    # every file gets the mode the umask gives a new file, safetensors' 0600 included
    umask = os.umask(0)
    os.umask(umask)
    assert {p.stat().st_mode & 0o777 for p in folder.iterdir()} == {0o666 & ~umask}


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda f: truncate(f / "trainable.safetensors"), "trainable.safetensors has"),
        (lambda f: (f / "state.pt").unlink(), "state.pt is missing"),
        (lambda f: (f / MANIFEST).unlink(), "truncated"),  # no manifest: the files are opened
        (lambda f: (f / MANIFEST).write_text("{"), "manifest.json is corrupt"),
    ],
)
def test_damage_is_named(tmp_path, damage, expected):
    folder = write(tmp_path, 2)
    truncate(folder / "trainable.safetensors", keep=1.0)  # unchanged
    damage(folder)
    if expected == "truncated":  # a folder without manifest: checked by opening its files
        assert checkpoint_problem(folder) is None
        truncate(folder / "state.pt")
    assert expected in checkpoint_problem(folder)
    with pytest.raises(CheckpointError, match=f"{folder}.*unusable"):
        verify_checkpoint(folder)


def test_flipped_byte_fails_the_hash(tmp_path):
    folder = write(tmp_path, 2)
    data = bytearray((folder / "trainable.safetensors").read_bytes())
    data[-5] ^= 0xFF
    (folder / "trainable.safetensors").write_bytes(bytes(data))
    assert "SHA-256" in checkpoint_problem(folder)


def test_newest_complete_is_found_and_broken_ones_are_named(tmp_path):
    for step in (2, 4, 6):
        write(tmp_path, step)
    (tmp_path / "latest").write_text("iter_000006")
    truncate(tmp_path / "iter_000006" / "state.pt")
    (tmp_path / "iter_000004" / MANIFEST).unlink()
    (tmp_path / "iter_000004" / "trainable.safetensors").unlink()
    lines = []
    assert find_checkpoint(tmp_path, lines.append) == tmp_path / "iter_000002"
    assert len(lines) == 2
    assert "iter_000006" in lines[0] and "state.pt has" in lines[0]
    assert "iter_000004" in lines[1] and "no manifest.json" in lines[1]

    truncate(tmp_path / "iter_000002" / "trainable.safetensors")
    with pytest.raises(CheckpointError, match="no complete checkpoint") as error:
        find_checkpoint(tmp_path)
    assert all(f"iter_00000{s}" in str(error.value) for s in (2, 4, 6))
    assert find_checkpoint(tmp_path / "nothing_here") is None


def test_failed_write_keeps_previous_and_removes_partial(tmp_path):
    previous = write(tmp_path, 2)

    def no_space(path):
        path.write_bytes(b"x" * 100)  # a partial file, as a full disk leaves it
        raise OSError(errno.ENOSPC, "No space left on device")

    final = tmp_path / "iter_000004"
    writers = [("trainable.safetensors", lambda p: p.write_bytes(b"ok")), ("state.pt", no_space)]
    with pytest.raises(CheckpointWriteError) as error:
        write_checkpoint(final, writers, needed_bytes=3 * 2**20)
    message = str(error.value)
    assert str(final) in message and "No space left on device" in message
    assert "needs about 3.0 MiB" in message and "free there" in message
    assert not final.exists() and not list(tmp_path.glob(".tmp*"))
    assert checkpoint_problem(previous) is None
