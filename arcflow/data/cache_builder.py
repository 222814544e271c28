"""Encode a prompt set into the prompt cache (``arcflow.data.prompt_cache``), resumably and split
across ranks.

Shard ``k`` always holds prompts ``[k P, (k + 1) P)`` encoded in the same batches, and rank ``r`` of
``N`` encodes the shards ``k = r, r + N, ...``: the files do not depend on the number of ranks. Each
shard is written atomically, so after an interruption the same command skips every complete shard
and re-encodes the rest; ``plan.json`` records the settings and refuses a resume that would mix
two different caches in one folder. Rank 0 writes ``index.json`` last, once every shard is there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm import tqdm

from arcflow.data.prompt_cache import (
    FORMAT,
    INDEX,
    SHARED,
    STORAGE,
    VERSION,
    CorruptCacheError,
    Rows,
    check_file,
    save_shard,
    save_shared,
    shard_name,
    write_json_atomic,
)
from arcflow.data.prompts import PromptRecords

PLAN = "plan.json"
logger = logging.getLogger(__name__)


class Encoder(Protocol):
    """What the builder needs of ``arcflow.models.text_encoders.PromptEncoder``."""

    token_limit: int

    def __call__(self, prompts: list[str]) -> dict[str, torch.Tensor]: ...

    def token_counts(self, prompts: list[str]) -> list[int]: ...


@dataclass(frozen=True)
class CacheSettings:
    """How prompts are stored.

    Args:
        prompts_per_shard: prompts in a shard (FLUX, bf16, ~128 tokens: ~1 MB a prompt).
        batch_size: prompts encoded together (part of the plan: batching must not change between
            ranks or resumes, so that every run writes the same bytes).
        storage: ``"bfloat16"`` or ``"float8_e4m3fn"`` (per-prompt scale).
        keep_padding: store unmasked sequences (FLUX's T5) at their full encoded length.
    """

    prompts_per_shard: int = 256
    batch_size: int = 16
    storage: str = "bfloat16"
    keep_padding: bool = False

    def __post_init__(self) -> None:
        if self.storage not in STORAGE:
            raise ValueError(f"storage must be one of {STORAGE}, got {self.storage!r}")
        if self.prompts_per_shard < 1 or self.batch_size < 1:
            raise ValueError("prompts_per_shard and batch_size must be >= 1")


def key_layout(probe: dict[str, torch.Tensor]) -> tuple[dict[str, dict], dict[str, dict]]:
    """Per-prompt and shared (``negative_*``) key specs from one encoded batch."""
    keys: dict[str, dict] = {}
    shared: dict[str, dict] = {}
    for key, value in probe.items():
        if key.endswith("_mask"):
            continue
        sequence = value.ndim == 3
        mask = f"{key}_mask" in probe
        spec = {"sequence": sequence, "mask": mask, "pad_to": None}
        if sequence and not mask:
            spec["pad_to"] = int(value.shape[1])
        (shared if key.startswith("negative_") else keys)[key] = spec
    return keys, shared


def _trimmed_rows(
    cond: dict[str, torch.Tensor],
    keys: dict[str, dict],
    counts: list[int],
    limit: int,
    keep_padding: bool,
) -> Rows:
    """One tensor per prompt and key, without the padding: masked sequences keep their mask's
    tokens, unmasked ones their tokenizer length (clipped to the encoder's limit)."""
    rows: Rows = {key: [] for key in keys}
    for key, spec in keys.items():
        for i, value in enumerate(cond[key]):
            if not spec["sequence"]:
                length = None
            elif spec["mask"]:
                length = int(cond[f"{key}_mask"][i].sum())
            else:
                length = len(value) if keep_padding else min(counts[i], limit)
            rows[key].append(value[:length].detach().cpu())
    return rows


def _fingerprint(records: PromptRecords) -> str:
    text = json.dumps([records.prompts, records.sizes])
    return hashlib.sha256(text.encode()).hexdigest()


def _complete(path: Path, keys: dict[str, dict], num_rows: int, storage: str) -> bool:
    """Whether a shard from an earlier run is whole; a damaged one is deleted to be redone."""
    if not path.is_file():
        return False
    try:
        check_file(path, keys, num_rows, storage)
    except CorruptCacheError as error:
        logger.warning("%s; encoding it again", error)
        path.unlink()
        return False
    return True


def build_prompt_cache(
    encoder: Encoder,
    records: PromptRecords,
    out_dir: str | Path,
    settings: CacheSettings,
    encoder_info: dict[str, Any],
    rank: int = 0,
    world_size: int = 1,
    barrier: Callable[[], None] = lambda: None,
    progress: bool = True,
) -> dict[str, Any] | None:
    """Encode ``records`` into ``out_dir``; returns the index on rank 0 (None elsewhere).

    Args:
        encoder_info: how the encoder was built (recorded in the plan and index).
        barrier: synchronises the ranks (``torch.distributed.barrier`` under torchrun).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not records.prompts:
        raise ValueError("no prompts to cache (every entry was empty)")
    probe = encoder([""])
    keys, shared_keys = key_layout(probe)
    size = settings.prompts_per_shard
    num_shards = math.ceil(len(records) / size)
    plan = {
        "format": FORMAT,
        "version": VERSION,
        "encoder": encoder_info,
        **asdict(settings),
        "num_prompts": len(records),
        "skipped_empty": records.skipped_empty,
        "prompts_sha256": _fingerprint(records),
        "keys": keys,
        "shared": {"file": SHARED, "keys": shared_keys} if shared_keys else None,
    }
    plan = json.loads(json.dumps(plan))  # tuples -> lists, as read back from disk
    if (out / PLAN).is_file():
        before = json.loads((out / PLAN).read_text())
        changed = sorted(k for k in plan.keys() | before.keys() if plan.get(k) != before.get(k))
        if changed:
            raise ValueError(
                f"{out} holds a cache made with other settings ({', '.join(changed)} differ): "
                "use another --out folder, or delete this one to start over"
            )
    barrier()  # every rank has compared with the old plan before rank 0 writes the new one
    if rank == 0:
        write_json_atomic(out / PLAN, plan)
        if shared_keys and not _complete(out / SHARED, shared_keys, 1, settings.storage):
            save_shared(
                out / SHARED,
                _trimmed_rows(probe, shared_keys, [0], 0, keep_padding=True),
                shared_keys,
                settings.storage,
            )

    def span(shard: int) -> range:
        return range(shard * size, min((shard + 1) * size, len(records)))

    mine = range(rank, num_shards, world_size)
    for shard in mine:
        for stale in out.glob(f".{shard_name(shard)}.tmp-*"):
            stale.unlink()  # a partial write of an interrupted run
    todo = [
        s for s in mine if not _complete(out / shard_name(s), keys, len(span(s)), settings.storage)
    ]
    bar = tqdm(
        total=sum(len(span(s)) for s in todo),
        unit="prompt",
        desc=f"caching {len(todo)} shard(s)"
        + (f" on {world_size} ranks" if world_size > 1 else ""),
        disable=not progress or rank != 0,
        dynamic_ncols=True,
    )
    for shard in todo:
        rows: Rows = {key: [] for key in keys}
        truncated = 0
        indices = span(shard)
        for start in range(0, len(indices), settings.batch_size):
            batch = [records.prompts[i] for i in indices[start : start + settings.batch_size]]
            counts = encoder.token_counts(batch)
            truncated += sum(c > encoder.token_limit for c in counts)
            cond = encoder(batch)
            for key, values in _trimmed_rows(
                cond, keys, counts, encoder.token_limit, settings.keep_padding
            ).items():
                rows[key] += values
            bar.update(len(batch))
        save_shard(
            out / shard_name(shard),
            rows,
            keys,
            settings.storage,
            [records.prompts[i] for i in indices],
            [records.sizes[i] for i in indices],
            truncated,
        )
    bar.close()
    barrier()
    if rank != 0:
        return None
    return write_index(out, plan, [len(span(s)) for s in range(num_shards)])


def write_index(out: Path, plan: dict[str, Any], shard_prompts: list[int]) -> dict[str, Any]:
    """Check every shard against the plan and write ``index.json`` (the cache's last file)."""
    shards = []
    truncated = 0
    for shard, num_prompts in enumerate(shard_prompts):
        path = out / shard_name(shard)
        info = check_file(path, plan["keys"], num_prompts, plan["storage"])
        truncated += int(info["metadata"].get("truncated", 0))
        shards.append({"file": path.name, "num_prompts": num_prompts, "bytes": path.stat().st_size})
    index = {**plan, "truncated": truncated, "shards": shards}
    write_json_atomic(out / INDEX, index)
    return index
