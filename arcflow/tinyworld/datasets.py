"""The tiny world's datasets under the project registry, for configs to name.

``SceneDataset`` (rendered scenes with captions) trains the VAEs; ``SceneLatentDataset`` (the
same scenes, pre-encoded by a stack's VAE) trains the teachers;
``ScenePromptDataset`` (captions only, nothing rendered) feeds data-free distillation.
"""

from __future__ import annotations

from torch.utils.data import Dataset

from arcflow.registry import DATASETS
from arcflow.tinyworld.scene_latents import SceneLatentDataset
from arcflow.tinyworld.scenes import DEFAULT_LENGTH, SceneDataset, sample_item

DATASETS.register_module(module=SceneDataset)
DATASETS.register_module(module=SceneLatentDataset)


@DATASETS.register_module()
class ScenePromptDataset(Dataset):
    """Captions of training scenes: ``dict(prompt=...)``, a pure function of (seed, index)."""

    def __init__(self, seed: int = 0, length: int = DEFAULT_LENGTH) -> None:
        self.seed = seed
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, str]:
        _, prompt = sample_item("train", self.seed, index)
        return {"prompt": prompt}
