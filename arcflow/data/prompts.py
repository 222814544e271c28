"""Prompt datasets for data-free distillation: raw prompts, or embeddings cached on disk."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch.utils.data import Dataset

from arcflow.registry import DATASETS


def read_prompts(path: str | Path) -> list[str]:
    """Prompts of a ``.txt`` (one per line) or ``.jsonl`` (a ``prompt`` field) file; blank lines
    are skipped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompt file {path} does not exist")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    lines = [line for line in lines if line]
    if path.suffix == ".jsonl":
        prompts = []
        for number, line in enumerate(lines, 1):
            record = json.loads(line)
            if "prompt" not in record:
                raise ValueError(f"{path}:{number}: a .jsonl record needs a 'prompt' field")
            prompts.append(str(record["prompt"]))
        return prompts
    if path.suffix != ".txt":
        raise ValueError(f"prompt files are .txt or .jsonl, got {path}")
    return lines


@DATASETS.register_module()
class PromptDataset(Dataset):
    """Prompts from a file or a list; the distiller's prompt encoder embeds them per batch."""

    def __init__(self, prompts: str | list[str]) -> None:
        self.prompts = read_prompts(prompts) if isinstance(prompts, str) else list(prompts)
        if not self.prompts:
            raise ValueError("the prompt dataset is empty")

    def __len__(self) -> int:
        return len(self.prompts)

    def __getitem__(self, index: int) -> dict[str, str]:
        return {"prompt": self.prompts[index]}


@DATASETS.register_module()
class EmbeddingDataset(Dataset):
    """Precomputed conditioning: a safetensors file whose tensors share their first dimension
    (one row per prompt), e.g. ``prompt_embeds (N, L, D)`` and ``pooled_prompt_embeds (N, D')``.
    Keys ``negative_*`` hold one row (the empty prompt) that every sample shares."""

    def __init__(self, path: str) -> None:
        tensors = load_file(path)
        self.shared = {k: v[0] for k, v in tensors.items() if k.startswith("negative_")}
        self.rows = {k: v for k, v in tensors.items() if not k.startswith("negative_")}
        sizes = {k: len(v) for k, v in self.rows.items()}
        if not sizes or len(set(sizes.values())) != 1:
            raise ValueError(f"{path}: per-prompt tensors must share a first dimension: {sizes}")
        self.length = next(iter(sizes.values()))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {**{k: v[index] for k, v in self.rows.items()}, **self.shared}
