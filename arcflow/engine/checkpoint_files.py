"""Checkpoint folders on disk: the atomic writer, the manifest, and finding a complete one.

A checkpoint folder is written under a temporary name; its ``manifest.json`` (the size and SHA-256
of every other file, read back from disk) is written last, and only then is the folder renamed to
``iter_XXXXXX``. A folder whose files no longer match its manifest (truncated by a full disk,
half-copied, bit-rotted) is therefore detectable, and so is one without a manifest.

Folders written before manifests existed are accepted when their files open: every
``.safetensors`` header describes exactly the bytes that follow it, and ``state.pt`` (a zip file)
passes its CRC checks.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import struct
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

from arcflow.errors import UserError
from arcflow.models.adapter_format import give_default_permissions

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
_DIR = re.compile(r"^iter_(\d{6,})$")
_CHUNK = 1 << 20


class CheckpointError(UserError):
    """A checkpoint that cannot be used, or none to resume from."""


class CheckpointWriteError(CheckpointError):
    """Writing a checkpoint failed; the previous ones are untouched."""


def checkpoint_iteration(path: Path) -> int | None:
    """The iteration of an ``iter_XXXXXX`` folder name, else None."""
    match = _DIR.match(path.name)
    return int(match.group(1)) if match else None


def list_checkpoints(root: str | Path) -> list[Path]:
    """The ``iter_XXXXXX`` folders under ``root``, oldest first (complete or not)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(step, p) for p in root.iterdir() if (step := checkpoint_iteration(p)) is not None]
    return [p for _, p in sorted(found)]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(folder: Path) -> None:
    """Record the size and SHA-256 of every file in ``folder`` (read back from disk)."""
    files = {
        p.name: dict(bytes=p.stat().st_size, sha256=_sha256(p))
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != MANIFEST
    }
    text = json.dumps(dict(version=MANIFEST_VERSION, files=files), indent=1)
    with (folder / MANIFEST).open("w") as stream:
        stream.write(text)
        stream.flush()
        os.fsync(stream.fileno())


def _safetensors_problem(path: Path) -> str | None:
    """Why a ``.safetensors`` file is not whole (its header promises more or fewer bytes)."""
    size = path.stat().st_size
    with path.open("rb") as stream:
        head = stream.read(8)
        if len(head) < 8:
            return f"{path.name} is truncated ({size} bytes)"
        (header_len,) = struct.unpack("<Q", head)
        if header_len > size - 8:
            return f"{path.name} is truncated ({size} bytes)"
        try:
            header = json.loads(stream.read(header_len))
        except ValueError:
            return f"{path.name} has a corrupt header"
    ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
    expected = 8 + header_len + max(ends, default=0)
    if size != expected:
        return f"{path.name} has {size} bytes where its header describes {expected}"
    return None


def _legacy_problem(folder: Path) -> str | None:
    """Check a folder written before manifests existed by opening its files."""
    tensors = sorted(folder.glob("*.safetensors"))
    if not tensors:
        return f"no {MANIFEST} and no tensor files (an incomplete write)"
    for path in tensors:
        if problem := _safetensors_problem(path):
            return problem
    state = folder / "state.pt"
    if state.exists():
        try:
            with zipfile.ZipFile(state) as archive:
                bad = archive.testzip()
        except (zipfile.BadZipFile, OSError):
            return "state.pt is truncated or corrupt"
        if bad is not None:
            return f"state.pt is corrupt (member {bad})"
    return None


def checkpoint_problem(folder: str | Path) -> str | None:
    """Why ``folder`` is not a complete checkpoint (None when it is): a file missing, of the wrong
    size or with the wrong SHA-256 according to the manifest, or no manifest at all."""
    folder = Path(folder)
    if not folder.is_dir():
        return "not a folder"
    manifest = folder / MANIFEST
    if not manifest.is_file():
        if (folder / "state.pt").exists() or list(folder.glob("*.safetensors")):
            return _legacy_problem(folder)
        return f"no {MANIFEST} (an incomplete write)"
    try:
        files = json.loads(manifest.read_text())["files"]
    except (ValueError, KeyError, TypeError):
        return f"{MANIFEST} is corrupt"
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        size = path.stat().st_size
        if size != expected["bytes"]:
            return f"{name} has {size} bytes, the manifest says {expected['bytes']} (truncated?)"
        if _sha256(path) != expected["sha256"]:
            return f"{name} does not match its SHA-256 in the manifest (corrupt)"
    return None


def verify_checkpoint(folder: str | Path) -> Path:
    """``folder`` if it is a complete checkpoint; else a CheckpointError saying why."""
    folder = Path(folder)
    if problem := checkpoint_problem(folder):
        raise CheckpointError(f"checkpoint {folder} is unusable: {problem}")
    return folder


def _candidates(root: Path) -> list[Path]:
    """Checkpoints newest first, starting at the one ``root/latest`` names when it exists (a run
    restarted with --no-resume may have left older, higher-numbered folders)."""
    found = list_checkpoints(root)
    pointer = root / "latest"
    if pointer.is_file():
        named = checkpoint_iteration(Path(pointer.read_text().strip()))
        if named is not None and any(checkpoint_iteration(p) == named for p in found):
            found = [p for p in found if checkpoint_iteration(p) <= named]
    return found[::-1]


def find_checkpoint(root: str | Path, warn: Callable[[str], None] | None = None) -> Path | None:
    """The newest complete checkpoint under ``root``; None when there is no checkpoint at all.

    Each incomplete or corrupt newer one is named in one line (given to ``warn``) and skipped;
    when every checkpoint is unusable, a CheckpointError lists them.
    """
    root = Path(root)
    skipped = []
    for path in _candidates(root):
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        skipped.append(f"{path.name}: {problem}")
        if warn is not None:
            warn(f"skipping checkpoint {path}: {problem}")
    if skipped:
        raise CheckpointError(
            f"no complete checkpoint in {root} ({'; '.join(skipped)}). Delete the broken folders "
            "to start over, pass --resume-from with a good copy, or use --no-resume."
        )
    return None


def _size(num_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if num_bytes < 1024:
            return f"{num_bytes:.0f} {unit}" if unit == "B" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1024
    return f"{num_bytes:.1f} GiB"


def _os_error(error: BaseException) -> OSError | None:
    """The OSError behind ``error`` (itself or one of its causes), if any."""
    while error is not None:
        if isinstance(error, OSError):
            return error
        error = error.__cause__ or error.__context__
    return None


def write_checkpoint(
    final: Path, writers: Iterable[tuple[str, Callable[[Path], None]]], needed_bytes: int
) -> Path:
    """Write a checkpoint folder atomically: each ``(file name, write(path))`` into a temporary
    folder, the manifest last, then rename it to ``final``.

    On any failure the temporary folder is removed, whatever existed before is left as it was,
    and a CheckpointWriteError says where, why, and how much space the checkpoint needs
    (``needed_bytes``, an estimate from the tensors to write).
    """
    tmp = final.parent / f".tmp_{final.name}-{os.getpid()}"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name, write in writers:
            write(tmp / name)
            give_default_permissions(tmp / name)
        write_manifest(tmp)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    except Exception as error:  # any writer's failure (torch, safetensors) ends the same way
        shutil.rmtree(tmp, ignore_errors=True)
        cause = _os_error(error)
        reason = cause.strerror if cause is not None and cause.strerror else str(error)
        space = ""
        if cause is not None and cause.errno in (errno.ENOSPC, errno.EDQUOT):
            free = shutil.disk_usage(final.parent).free if final.parent.exists() else 0
            space = f"; it needs about {_size(needed_bytes)}, {_size(free)} is free there"
        elif cause is None or cause.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            space = f"; it needs about {_size(needed_bytes)}"
        raise CheckpointWriteError(
            f"could not write checkpoint {final} ({reason}){space}. The previous checkpoints are "
            "untouched: free space or fix permissions (or set checkpoint_dir elsewhere), then "
            "rerun the same command to resume."
        ) from error
    return final
