"""The prompt-embedding cache: safetensors shards plus ``index.json``, and the dataset over them.

Layout of a cache folder (written by ``tools/cache_prompts.py``)::

    index.json                 format, encoder, storage, key layout, counts, shard list
    shared.safetensors         the negative prompt's embeddings, stored once (Qwen-Image)
    shard_00000.safetensors    prompts 0 .. P-1
    shard_00001.safetensors    prompts P .. 2P-1, ...

A shard holds, per conditioning key, either one row per prompt (``pooled_prompt_embeds (n, D)``)
or a sequence per prompt with its padding trimmed: the rows of all prompts concatenated,
``prompt_embeds (sum L_i, D)``, and their lengths ``prompt_embeds.lengths (n,)``. Storage is
bfloat16, or float8 (e4m3) with one float32 scale per prompt and key (``<key>.scale (n,)``).
``sizes (n, 2)`` holds each prompt's requested (height, width) in pixels, (0, 0) for none; the
prompts and the count of truncated ones are in the shard's metadata. Tensors only, no pickles.

Padding back: a key with a mask (Qwen-Image) is padded per batch to the batch's longest prompt and
its ``<key>_mask`` marks the tokens, exactly what the pipeline does. A key without a mask (FLUX's
T5, which the pipeline runs unmasked at a fixed length) is padded with zeros back to the encoded
length ``pad_to``, so the transformer sees as many text tokens as at inference; the trimmed padding
positions hold zeros instead of T5's padding features (cache with ``--keep-padding`` to store them).
"""

from __future__ import annotations

import json
import os
from bisect import bisect_right
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save
from torch.utils.data import Dataset

from arcflow.data.buckets import AspectBuckets
from arcflow.registry import DATASETS, FUNCTIONS

FORMAT = "arcflow-prompt-cache"
VERSION = 1
INDEX = "index.json"
SHARED = "shared.safetensors"
STORAGE = ("bfloat16", "float8_e4m3fn")
FLOAT8_MAX = 448.0  # largest finite float8 e4m3 value
OUTPUT_DTYPE = torch.bfloat16

Rows = dict[str, list[torch.Tensor]]  # key -> one tensor per prompt, padding already trimmed


class CorruptCacheError(RuntimeError):
    """A cache file is missing, truncated or inconsistent with the index."""


def shard_name(shard: int) -> str:
    return f"shard_{shard:05d}.safetensors"


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, flush to disk, then rename into place: a crash
    leaves either the old file or the complete new one, never a partial one."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: Path, value: Any) -> None:
    write_atomic(path, (json.dumps(value, indent=1, sort_keys=True) + "\n").encode())


# --------------------------------------------------------------------------- storage precision
def quantize(rows: list[torch.Tensor], storage: str) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Rows in the storage dtype, and their float32 scales (ones for bfloat16)."""
    if storage == "bfloat16":
        return [r.to(torch.bfloat16) for r in rows], torch.ones(len(rows))
    if storage != "float8_e4m3fn":
        raise ValueError(f"storage must be one of {STORAGE}, got {storage!r}")
    amax = torch.stack([r.detach().float().abs().amax() for r in rows])
    scales = (amax / FLOAT8_MAX).clamp_min(torch.finfo(torch.float32).tiny)
    return [(r.float() / s).to(torch.float8_e4m3fn) for r, s in zip(rows, scales)], scales


def dequantize(stored: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    if scale is None:
        return stored.to(OUTPUT_DTYPE)
    return (stored.float() * scale).to(OUTPUT_DTYPE)


def pack(rows: Rows, keys: dict[str, dict], storage: str) -> dict[str, torch.Tensor]:
    """Per-prompt rows -> shard tensors (see the module docstring)."""
    tensors: dict[str, torch.Tensor] = {}
    for key, spec in keys.items():
        stored, scales = quantize([r.cpu() for r in rows[key]], storage)
        if spec["sequence"]:
            tensors[key] = torch.cat(stored)
            tensors[f"{key}.lengths"] = torch.tensor([len(r) for r in stored], dtype=torch.int32)
        else:
            tensors[key] = torch.stack(stored)
        if storage != "bfloat16":
            tensors[f"{key}.scale"] = scales.float()
    return {k: v.contiguous() for k, v in tensors.items()}


def save_shard(
    path: Path,
    rows: Rows,
    keys: dict[str, dict],
    storage: str,
    prompts: list[str],
    sizes: list[tuple[int, int] | None],
    truncated: int = 0,
) -> None:
    """Write one shard atomically."""
    tensors = pack(rows, keys, storage)
    tensors["sizes"] = torch.tensor([s or (0, 0) for s in sizes], dtype=torch.int32).view(-1, 2)
    # One metadata entry: safetensors orders several entries differently from run to run.
    metadata = {"arcflow": json.dumps({"prompts": prompts, "truncated": truncated})}
    write_atomic(path, save(tensors, metadata=metadata))


def save_shared(path: Path, rows: Rows, keys: dict[str, dict], storage: str) -> None:
    write_atomic(path, save(pack(rows, keys, storage)))


def check_file(path: Path, keys: dict[str, dict], num_rows: int, storage: str) -> dict[str, Any]:
    """Open a shard's header and check it against ``keys``; returns its lengths, sizes and
    metadata. Raises :class:`CorruptCacheError` naming the file."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            names = set(handle.keys())
            lengths = {k: handle.get_tensor(f"{k}.lengths") for k in keys if keys[k]["sequence"]}
            sizes = handle.get_tensor("sizes") if "sizes" in names else None
            rows = {k: handle.get_slice(k).get_shape()[0] for k in keys}
            metadata = json.loads((handle.metadata() or {}).get("arcflow", "{}"))
    except Exception as error:  # safetensors raises several types for a damaged file
        raise CorruptCacheError(f"cache file {path} is unreadable ({error})") from error
    expected = {k: int(lengths[k].sum()) if k in lengths else num_rows for k in keys}
    wrong = {k: (rows[k], expected[k]) for k in keys if rows[k] != expected[k]}
    for k, lens in lengths.items():
        if len(lens) != num_rows:
            wrong[f"{k}.lengths"] = (len(lens), num_rows)
    if storage != "bfloat16":
        missing = {f"{k}.scale" for k in keys} - names
        wrong.update({k: ("missing", num_rows) for k in missing})
    if wrong:
        raise CorruptCacheError(
            f"cache file {path} is inconsistent: rows (found, expected) {wrong}"
        )
    return {"lengths": lengths, "sizes": sizes, "metadata": metadata}


def read_index(root: str | Path) -> dict[str, Any]:
    path = Path(root) / INDEX
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: build the cache with tools/cache_prompts.py (an interrupted run "
            "writes the index last; re-run the same command to finish it)"
        )
    index = json.loads(path.read_text())
    if index.get("format") != FORMAT or index.get("version") != VERSION:
        raise ValueError(f"{path} is not an {FORMAT} v{VERSION} index")
    return index


# --------------------------------------------------------------------------- reading
class _Shard:
    """An open shard: memory-mapped tensors, row offsets and the prompts."""

    def __init__(self, path: Path, lengths: dict[str, torch.Tensor]) -> None:
        self.handle = safe_open(str(path), framework="pt")
        self.offsets = {k: [0, *torch.cumsum(v, 0).tolist()] for k, v in lengths.items()}
        self.scaled = any(k.endswith(".scale") for k in self.handle.keys())
        metadata = json.loads((self.handle.metadata() or {}).get("arcflow", "{}"))
        self.prompts: list[str] = metadata.get("prompts", [])

    def row(self, key: str, i: int) -> torch.Tensor:
        if key in self.offsets:
            start, stop = self.offsets[key][i], self.offsets[key][i + 1]
        else:
            start, stop = i, i + 1
        stored = self.handle.get_slice(key)[start:stop]
        if key not in self.offsets:
            stored = stored[0]
        scale = self.handle.get_slice(f"{key}.scale")[i : i + 1] if self.scaled else None
        return dequantize(stored, scale)


def _padded(row: torch.Tensor, length: int) -> torch.Tensor:
    return torch.cat([row, row.new_zeros(length - len(row), *row.shape[1:])])


@DATASETS.register_module()
class PromptCacheDataset(Dataset):
    """Cached conditioning of ``tools/cache_prompts.py``: one sample per prompt, holding its
    embeddings (bfloat16, trimmed sequences padded back as the module docstring says), the shared
    negative embeddings, the prompt text and, with buckets, its ``latent_size``. Batch it with
    ``collate_fn=dict(type="arcflow.collate_prompts")``.

    Every shard is checked against the index when the dataset is built (file size, header, row
    counts), so a damaged cache stops the run before training, naming the file.

    Args:
        path: the cache folder.
        buckets: :class:`AspectBuckets` keyword arguments (use ``BucketBatchSampler``).
        open_shards: how many shards each worker keeps open (memory-mapped).
    """

    def __init__(self, path: str, buckets: dict | None = None, open_shards: int = 16) -> None:
        self.root = Path(path)
        index = read_index(self.root)
        self.index = index
        self.keys: dict[str, dict] = index["keys"]
        self.shard_files = [self.root / s["file"] for s in index["shards"]]
        self.starts = [0]
        self.lengths: list[dict[str, torch.Tensor]] = []
        sizes: list[tuple[int, int] | None] = []
        for shard, path_ in zip(index["shards"], self.shard_files):
            if not path_.is_file() or path_.stat().st_size != shard["bytes"]:
                found = path_.stat().st_size if path_.is_file() else "missing"
                raise CorruptCacheError(
                    f"cache file {path_}: {found} bytes, the index says {shard['bytes']}; re-run "
                    "tools/cache_prompts.py with the same arguments after deleting it"
                )
            info = check_file(path_, self.keys, shard["num_prompts"], index["storage"])
            self.lengths.append(info["lengths"])
            sizes += [None if h == 0 else (h, w) for h, w in info["sizes"].tolist()]
            self.starts.append(self.starts[-1] + shard["num_prompts"])
        if self.starts[-1] != index["num_prompts"] or not index["num_prompts"]:
            raise CorruptCacheError(
                f"{self.root / INDEX}: shards hold {self.starts[-1]} prompts, the index says "
                f"{index['num_prompts']}"
            )
        self.shared: dict[str, torch.Tensor] = {}
        if index.get("shared"):
            shared_keys = index["shared"]["keys"]
            info = check_file(self.root / SHARED, shared_keys, 1, index["storage"])
            shared = _Shard(self.root / SHARED, info["lengths"])
            self.shared = self._sample(shared, shared_keys, 0)
        self.buckets = AspectBuckets(**buckets) if buckets is not None else None
        self.bucket_ids = self.buckets.assign_all(sizes) if self.buckets else None
        self._open = lru_cache(maxsize=open_shards)(self._open_shard)

    def _open_shard(self, shard: int) -> _Shard:
        return _Shard(self.shard_files[shard], self.lengths[shard])

    @staticmethod
    def _sample(shard: _Shard, keys: dict[str, dict], i: int) -> dict[str, torch.Tensor]:
        sample = {}
        for key, spec in keys.items():
            row = shard.row(key, i)
            if spec["sequence"] and spec["mask"]:
                sample[f"{key}_mask"] = torch.ones(len(row), dtype=torch.long)
            elif spec["sequence"] and spec["pad_to"]:
                row = _padded(row, spec["pad_to"])
            sample[key] = row
        return sample

    def __len__(self) -> int:
        return self.starts[-1]

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"prompt {index} out of range for {len(self)} cached prompts")
        shard_id = bisect_right(self.starts, index) - 1
        shard = self._open(shard_id)
        row = index - self.starts[shard_id]
        item: dict[str, Any] = {**self._sample(shard, self.keys, row), **self.shared}
        item["prompt"] = shard.prompts[row]
        if self.buckets is not None:
            item["latent_size"] = torch.tensor(self.buckets.latent_size(self.bucket_ids[index]))
        return item


@FUNCTIONS.register_module()
def collate_prompts(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch cached samples: sequences that have a mask are zero-padded to one length, shared with
    the negative prompt's (so the teacher's CFG pair runs as one batch), masks padded with 0;
    ``negative_*`` entries, the same in every sample, become a batch of one; strings become lists;
    everything else is stacked."""
    first = samples[0]
    masked = [k for k in first if f"{k}_mask" in first]
    length = max((len(s[k]) for s in samples for k in masked), default=0)
    batch: dict[str, Any] = {}
    for key, value in first.items():
        shared = key.startswith("negative_")
        values = [value] if shared else [s[key] for s in samples]
        if isinstance(value, str):
            batch[key] = values
        elif key in masked or (key.endswith("_mask") and key[: -len("_mask")] in masked):
            batch[key] = torch.stack([_padded(v, length) for v in values])
        else:
            batch[key] = torch.stack(values)
    return batch
