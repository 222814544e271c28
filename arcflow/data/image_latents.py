"""Captioned images encoded once by a model's VAE: the latents the distiller's data variant
(``ArcFlowDistiller(mode="data")``) starts its segments from, and the images an editing model's
distillation edits (:class:`EditImageDataset`)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save
from torch.utils.data import Dataset
from tqdm import tqdm

from arcflow.data.prompt_cache import write_atomic
from arcflow.data.prompts import table_rows
from arcflow.registry import DATASETS


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [-1, 1]."""
    return torch.from_numpy(image).permute(2, 0, 1).float().div(127.5).sub(1.0)


def tensor_to_image(tensor: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [-1, 1] -> (H, W, 3) uint8."""
    pixels = tensor.detach().float().add(1.0).mul(127.5).round().clamp(0, 255)
    return pixels.to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def square_image(path: Path, resolution: int) -> torch.Tensor:
    """An image file as ``(3, resolution, resolution)`` in [-1, 1]: the shorter side resized to
    ``resolution``, then the centre cropped."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        scale = resolution / min(image.size)
        width, height = (max(resolution, round(side * scale)) for side in image.size)
        image = image.resize((width, height), Image.Resampling.LANCZOS)
        left, top = (width - resolution) // 2, (height - resolution) // 2
        image = image.crop((left, top, left + resolution, top + resolution))
        return image_to_tensor(np.asarray(image))


@DATASETS.register_module()
class ImageLatentDataset(Dataset):
    """Captioned images as normalised VAE latents (the posterior mean), encoded on first use.

    Items: ``latents`` (C, h, w) float32 and ``prompt``.

    Args:
        pretrained: the teacher's diffusers folder or Hub id; its ``vae/`` encodes the images.
        records: a .jsonl / .csv / .parquet file with an ``image`` path (relative to the file's
            folder, or absolute) and a ``prompt`` per record.
        resolution: the square image side (a multiple of the VAE's downsampling x 2).
        cache_dir: where the encoded file lives, named by the VAE's weights, the records file and
            the resolution, so that new images or another VAE never reuse stale latents. It holds
            every latent in bfloat16 (FLUX.1-dev at 1024 x 1024: 0.5 MB an image) and is loaded
            whole: for data sets that fit in memory.
        batch_size: images per VAE call while encoding (on CUDA when there is one).
    """

    def __init__(
        self,
        pretrained: str,
        records: str,
        resolution: int = 1024,
        cache_dir: str = "work_dirs/latent_cache",
        batch_size: int = 8,
    ) -> None:
        from arcflow.models.loading import folder_fingerprint

        records_path = Path(records)
        if not records_path.is_file():
            raise FileNotFoundError(f"image records file {records_path} does not exist")
        if not Path(pretrained).is_dir():  # a Hub id: its VAE only, from the local Hub cache
            from huggingface_hub import snapshot_download

            pretrained = snapshot_download(pretrained, allow_patterns=["vae/*"])
        vae = folder_fingerprint(Path(pretrained) / "vae", ("*.safetensors", "*.json"))
        if vae is None:
            raise FileNotFoundError(f"{pretrained}/vae/ holds no VAE to encode the images with")
        listing = hashlib.sha256(records_path.read_bytes()).hexdigest()[:12]
        name = f"{vae}-{records_path.stem}-{listing}-{resolution}"
        self.path = Path(cache_dir) / f"{name}.safetensors"
        if not self.path.exists():
            self._build(pretrained, records_path, resolution, batch_size)
        with safe_open(self.path, "pt") as handle:  # the prompts ride in the header metadata
            self.prompts: list[str] = json.loads(handle.metadata()["prompts"])
            self.latents = handle.get_tensor("latents")
        if len(self.prompts) != len(self.latents):
            raise RuntimeError(f"{self.path} is inconsistent; delete it to rebuild the cache")

    @staticmethod
    def _records(path: Path) -> list[tuple[Path, str]]:
        pairs = []
        for number, row in enumerate(table_rows(path), 1):
            image = row.get("image")
            prompt = str(row.get("prompt") or row.get("instruction") or "").strip()
            if not image or not prompt:
                raise ValueError(
                    f"{path}:{number}: a record needs an 'image' and a 'prompt' (or 'instruction')"
                )
            image_path = Path(image) if Path(image).is_absolute() else path.parent / image
            if not image_path.is_file():
                raise FileNotFoundError(f"{path}:{number}: image {image_path} does not exist")
            pairs.append((image_path, prompt))
        return pairs

    def _build(self, pretrained: str, records: Path, resolution: int, batch_size: int) -> None:
        from arcflow.models.vae import LatentCodec, load_vae

        pairs = self._records(records)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        codec = LatentCodec(load_vae(pretrained)).to(device)
        latents = []
        for start in tqdm(
            range(0, len(pairs), batch_size), desc=f"encoding {len(pairs)} images", unit="batch"
        ):
            batch = [
                square_image(image, resolution) for image, _ in pairs[start : start + batch_size]
            ]
            with torch.no_grad():
                encoded = codec.encode(torch.stack(batch).to(device), sample=False)
            latents.append(encoded.to(torch.bfloat16).cpu())
        prompts = json.dumps([prompt for _, prompt in pairs])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(
            self.path, save({"latents": torch.cat(latents)}, metadata={"prompts": prompts})
        )

    # The item key of the latents: where the distiller starts its segments from.
    latent_key = "latents"

    def __len__(self) -> int:
        return len(self.prompts)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        return {self.latent_key: self.latents[index].float(), "prompt": self.prompts[index]}


@DATASETS.register_module()
class EditImageDataset(ImageLatentDataset):
    """Images to edit and their instructions, for distilling an editing model (FLUX.1 Kontext):
    the same records and encode-once cache as :class:`ImageLatentDataset` (a record's text may be
    called ``instruction`` instead of ``prompt``), but the latents are the teacher's condition
    image: items ``image_latents`` (C, h, w) and ``prompt``. The edited image is drawn from noise
    at the source's size, data-free, as the teacher would draw it."""

    latent_key = "image_latents"
