"""Prompt files and the online prompt dataset (the distiller's prompt encoder embeds each batch).

Prompt files: ``.txt`` (one prompt per line), ``.jsonl``, ``.csv`` or ``.parquet`` (a ``prompt``
column and optional ``height`` / ``width`` in pixels, used by aspect-ratio buckets). Empty prompts
are skipped and counted.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset

from arcflow.data.buckets import AspectBuckets
from arcflow.registry import DATASETS

Size = tuple[int, int]  # (height, width) in pixels
SUFFIXES = (".txt", ".jsonl", ".csv", ".parquet")


@dataclass
class PromptRecords:
    """Prompts in file order, their optional sizes, and how many empty entries were skipped."""

    prompts: list[str] = field(default_factory=list)
    sizes: list[Size | None] = field(default_factory=list)
    skipped_empty: int = 0

    def __len__(self) -> int:
        return len(self.prompts)


def _size(record: dict, where: str) -> Size | None:
    height, width = record.get("height"), record.get("width")
    if height in (None, "") and width in (None, ""):
        return None
    if height in (None, "") or width in (None, ""):
        raise ValueError(f"{where}: give both 'height' and 'width' or neither")
    return int(height), int(width)


def table_rows(path: Path) -> Iterator[dict]:
    """The records of a .jsonl, .csv or .parquet file as dicts (a blank jsonl line: no prompt)."""
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                yield json.loads(line) if line.strip() else {"prompt": ""}
    elif path.suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as table:
            yield from csv.DictReader(table)
    else:
        try:
            import pyarrow.parquet as pq
        except ImportError as error:
            raise ImportError(
                f"reading {path} needs pyarrow (pip install pyarrow); or convert it to .jsonl"
            ) from error
        yield from pq.read_table(path).to_pylist()


def read_prompt_records(paths: str | Path | Iterable[str | Path]) -> PromptRecords:
    """Every prompt of ``paths`` (one file or several, concatenated in order)."""
    records = PromptRecords()
    for path in [paths] if isinstance(paths, (str, Path)) else paths:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"prompt file {path} does not exist")
        if path.suffix not in SUFFIXES:
            raise ValueError(f"prompt files are {'/'.join(SUFFIXES)}, got {path}")
        if path.suffix == ".txt":
            rows: Iterable[dict] = (
                {"prompt": line} for line in path.read_text(encoding="utf-8").splitlines()
            )
        else:
            rows = table_rows(path)
        for number, row in enumerate(rows, 1):
            if "prompt" not in row:
                raise ValueError(f"{path}:{number}: a record needs a 'prompt' field")
            prompt = str(row["prompt"] or "").strip()
            if not prompt:
                records.skipped_empty += 1
                continue
            records.prompts.append(prompt)
            records.sizes.append(_size(row, f"{path}:{number}"))
    return records


def read_prompts(path: str | Path) -> list[str]:
    """The prompts of one prompt file, empty ones skipped."""
    return read_prompt_records(path).prompts


@DATASETS.register_module()
class PromptDataset(Dataset):
    """Prompts from files or a list: the online path, where the distiller's ``prompt_encoder``
    embeds every batch (``offload=True`` keeps the encoder on the CPU between batches).

    Args:
        prompts: a prompt file, or a list of prompt strings.
        buckets: :class:`AspectBuckets` keyword arguments; each sample then carries the
            ``latent_size`` of its prompt's bucket (use ``BucketBatchSampler``).
    """

    def __init__(self, prompts: str | list[str], buckets: dict | None = None) -> None:
        if isinstance(prompts, str):
            records = read_prompt_records(prompts)
        else:
            records = PromptRecords(list(prompts), [None] * len(prompts))
        if not records.prompts:
            raise ValueError("the prompt dataset is empty")
        self.prompts = records.prompts
        self.buckets = AspectBuckets(**buckets) if buckets is not None else None
        self.bucket_ids = self.buckets.assign_all(records.sizes) if self.buckets else None

    def __len__(self) -> int:
        return len(self.prompts)

    def __getitem__(self, index: int) -> dict:
        item: dict = {"prompt": self.prompts[index]}
        if self.buckets is not None:
            item["latent_size"] = torch.tensor(self.buckets.latent_size(self.bucket_ids[index]))
        return item
