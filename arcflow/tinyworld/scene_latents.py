"""Training scenes encoded once by a stack's VAE, so that a teacher's iterations skip the encoder.

A tiny teacher step spends about as long in the frozen VAE encoder as in the transformer it
trains; the scenes are deterministic, so their latents can be computed once per VAE and reused by
every epoch and every later run. The cache is one safetensors file named by the VAE's weights,
the split, the seed and the number of scenes: a retrained VAE never reuses stale latents.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save
from torch.utils.data import Dataset
from tqdm import tqdm

from arcflow.data.image_latents import image_to_tensor
from arcflow.data.prompt_cache import write_atomic
from arcflow.tinyworld.scenes import (
    COLORS,
    SHAPES,
    SIZE_OMITTED_PROBABILITY,
    SIZES,
    Scene,
    render,
    sample_item,
)


def object_mask(images: torch.Tensor, radius: int = 4) -> torch.Tensor:
    """1 within ``radius`` pixels of a colour edge, else 0: ``(B, 3, H, W)`` -> ``(B, 1, H, W)``.

    Scene backgrounds are flat, so edges mark the objects (and the seam of a two-tone background);
    dilating them covers the objects' interiors.
    """
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().amax(1, keepdim=True)
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().amax(1, keepdim=True)
    edges = F.pad(dx, (0, 1)) + F.pad(dy, (0, 0, 0, 1)) > 0.1
    return F.max_pool2d(edges.float(), 2 * radius + 1, stride=1, padding=radius)


def latent_object_mask(images: torch.Tensor, latent_size: tuple[int, int]) -> torch.Tensor:
    """The share of each latent pixel's patch near an object: :func:`object_mask` averaged over
    the patches, ``(B, 3, H, W)`` -> ``(B, 1, h, w)``."""
    return F.adaptive_avg_pool2d(object_mask(images), latent_size)


class SceneLatentDataset(Dataset):
    """The first ``size`` training scenes of ``seed`` as normalised VAE latents.

    Items: ``latents`` (C, h, w) float32 (what ``LatentCodec.encode`` gives for the image, the
    posterior mean) and ``prompt``; with ``object_weight`` W > 0 also ``loss_weight`` (1, h, w),
    ``1 + W * m`` where ``m`` is the fraction of each latent pixel's patch near an object
    (:func:`latent_object_mask`): the flow-matching trainer multiplies its squared error by it, so
    that the objects, a few percent of each image, are not learnt last.

    Args:
        pretrained: a diffusers folder whose ``vae/`` encodes the scenes.
        size: number of scenes (index ``i`` is ``sample_item(split, seed, i)``).
        seed, split: which scenes.
        object_weight: extra loss weight on latent pixels covering objects; 0 (default) yields
            no ``loss_weight``, the plain loss.
        cache_dir: where the encoded file lives; built on first use (with a progress bar),
            written atomically.
        batch_size: scenes per VAE call while building.
        repeat: scenes holding an object described by a phrase of colour / size / shape words
            appear that many times per epoch (the largest factor of their objects), e.g.
            ``{"large star": 3}``: more of the training signal goes to what the model gets wrong,
            from the same cached latents. Per caption the conditional distribution is unchanged.
        size_omitted: None keeps the cached captions (each object's size left out with
            probability ``SIZE_OMITTED_PROBABILITY``); a value re-draws them with that probability
            instead, the same captions but for size words. What 0 is for: held-out prompts ask
            for (colour, shape, size, position) combinations that training never shows, and a
            (colour, shape, position) seen with one size only comes with that size in every
            caption that leaves the size out, which can teach a model to draw it whatever size a
            prompt states.
    """

    def __init__(
        self,
        pretrained: str,
        size: int = 32768,
        seed: int = 0,
        split: str = "train",
        object_weight: float = 0.0,
        cache_dir: str = "work_dirs/latent_cache",
        batch_size: int = 64,
        repeat: Mapping[str, int] | None = None,
        size_omitted: float | None = None,
    ) -> None:
        if size < 1:
            raise ValueError(f"size must be positive, got {size}")
        if object_weight < 0:
            raise ValueError(f"object_weight must be >= 0, got {object_weight}")
        self.object_weight = object_weight
        if size_omitted is not None and not 0.0 <= size_omitted <= 1.0:
            raise ValueError(f"size_omitted is a probability in [0, 1], got {size_omitted}")
        repeat = dict(repeat or {})
        phrases = {phrase: _phrase_words(phrase, factor) for phrase, factor in repeat.items()}
        from arcflow.models.loading import folder_fingerprint

        # The weights and config.json (its latent scale) of the VAE define the latents.
        vae = folder_fingerprint(Path(pretrained) / "vae", ("*.safetensors", "*.json"))
        if vae is None:
            raise FileNotFoundError(f"{pretrained}/vae/ holds no VAE to encode the scenes with")
        name = f"{Path(pretrained).name}-{vae}-{split}-{seed}-{size}"
        self.path = Path(cache_dir) / f"{name}.safetensors"
        if not self.path.exists():
            self._build(pretrained, size, seed, split, batch_size)
        with safe_open(self.path, "pt") as handle:  # the prompts ride in the header metadata
            self.prompts: list[str] = json.loads(handle.metadata()["prompts"])
            self.latents = handle.get_tensor("latents")
            self.mask = handle.get_tensor("object_mask")
        if len(self.prompts) != len(self.latents) or len(self.latents) != size:
            raise RuntimeError(f"{self.path} is inconsistent; delete it to rebuild the cache")
        self.index = torch.arange(size)
        if size_omitted is None and not phrases:
            return
        # Scenes are a pure function of (split, seed, index): re-drawn once here (no rendering,
        # ~3 s for 32768) for new captions and for the objects the repeat phrases match.
        omitted = SIZE_OMITTED_PROBABILITY if size_omitted is None else size_omitted
        items = [sample_item(split, seed, i, size_omitted=omitted) for i in range(size)]
        if size_omitted is not None:
            self.prompts = [prompt for _, prompt in items]
        if phrases:
            factors = _repeat_factors([scene for scene, _ in items], phrases, repeat)
            self.index = torch.repeat_interleave(self.index, factors)

    def _build(self, pretrained: str, size: int, seed: int, split: str, batch_size: int) -> None:
        from arcflow.models.vae import LatentCodec, load_vae

        # On the accelerator when there is one: the encoder is most of a build's time.
        device = "cuda" if torch.cuda.is_available() else "cpu"
        codec = LatentCodec(load_vae(pretrained)).to(device)
        latents, masks, prompts = [], [], []
        for start in tqdm(range(0, size, batch_size), desc=f"encoding {size} scenes", unit="batch"):
            items = [
                sample_item(split, seed, i) for i in range(start, min(start + batch_size, size))
            ]
            images = torch.stack([image_to_tensor(render(scene)) for scene, _ in items])
            with torch.no_grad():
                latents.append(codec.encode(images.to(device), sample=False).float().cpu())
            masks.append(latent_object_mask(images, latents[-1].shape[-2:]))
            prompts.extend(prompt for _, prompt in items)
        tensors = {"latents": torch.cat(latents), "object_mask": torch.cat(masks)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, save(tensors, metadata={"prompts": json.dumps(prompts)}))

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        index = int(self.index[index])
        item: dict[str, torch.Tensor | str] = {
            "latents": self.latents[index],
            "prompt": self.prompts[index],
        }
        if self.object_weight:
            item["loss_weight"] = 1.0 + self.object_weight * self.mask[index]
        return item


def _repeat_factors(
    scenes: list[Scene], phrases: dict[str, set[str]], repeat: dict[str, int]
) -> torch.Tensor:
    """(N,) int64: per scene, the largest factor of a phrase one of its objects matches, or 1."""
    factors = []
    for scene in scenes:
        words = [{obj.color, obj.size, obj.shape} for obj in scene.objects]
        matched = [repeat[p] for p, need in phrases.items() for have in words if need <= have]
        factors.append(max(matched, default=1))
    return torch.tensor(factors)


def _phrase_words(phrase: str, factor: int) -> set[str]:
    """The attribute words of a ``repeat`` phrase, checked against the scene vocabulary."""
    words = set(phrase.split())
    unknown = words - {*COLORS, *SIZES, *SHAPES}
    if not words or unknown:
        raise ValueError(
            f"repeat phrase {phrase!r} must be colour / size / shape words "
            f"({', '.join([*COLORS, *SIZES, *SHAPES])}); unknown: {sorted(unknown) or 'empty'}"
        )
    if not isinstance(factor, int) or factor < 1:
        raise ValueError(f"repeat factor of {phrase!r} must be a positive integer, got {factor!r}")
    return words


__all__ = ["SceneLatentDataset", "latent_object_mask", "object_mask"]
