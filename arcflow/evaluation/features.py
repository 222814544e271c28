"""Feature spaces of the evaluation harness: images -> features for Fréchet distances, diversity
and the CLIP score; and the uint8 <-> [-1, 1] conversions of the images they read."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Protocol

import torch


class FeatureSpace(Protocol):
    """Image features for Fréchet distances and diversity."""

    name: str

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` uint8 -> ``(N, D)``."""
        ...


class PixelFeatures:
    """The image itself at ``size`` x ``size`` (area-averaged, values in [0, 1]) as a feature: no
    model and no file, so it serves any base anywhere (the web demo's diversity). Coarse on
    purpose: it compares layouts and colours, not the texture a detector would see."""

    name = "pixels"

    def __init__(self, size: int = 32) -> None:
        self.size = size

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        small = torch.nn.functional.interpolate(
            images.float() / 255.0, size=(self.size, self.size), mode="area"
        )
        return small.flatten(1)


class InceptionFeatures:
    """Standard FID features: the 2048-d pool features of the TorchScript Inception-v3
    (``inception-2015-12-05.pt`` of StyleGAN / clean-fid), which takes uint8 images of any size
    and resizes them itself. Loaded from a local file only: nothing is downloaded."""

    name = "inception"

    def __init__(self, path: str | Path, device: torch.device, batch_size: int = 64) -> None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"Inception checkpoint {path} not found; standard FID needs the TorchScript "
                "inception-2015-12-05.pt on disk (it is never downloaded). Omit --inception to "
                "skip it."
            )
        with warnings.catch_warnings():
            # TorchScript is the detector's published format; torch's deprecation of the
            # format changes nothing about loading this file.
            warnings.filterwarnings("ignore", "`torch.jit.load` is deprecated", DeprecationWarning)
            self.model = torch.jit.load(str(path), map_location=device).eval()
        self.device = device
        self.batch_size = batch_size

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        chunks = [
            self.model(chunk.to(self.device), return_features=True).float().cpu()
            for chunk in images.split(self.batch_size)
        ]
        return torch.cat(chunks)


class ClipScorer:
    """CLIP image features (for a CLIP-space FID and diversity) and the CLIP score
    ``100 * max(cos(image, text), 0)``, from a local transformers ``CLIPModel`` folder."""

    name = "clip"

    def __init__(self, path: str | Path, device: torch.device) -> None:
        from transformers import CLIPModel, CLIPProcessor

        if not Path(path).is_dir():
            raise FileNotFoundError(
                f"CLIP folder {path} not found; the CLIP score needs a local transformers "
                "CLIPModel folder (it is never downloaded). Omit --clip to skip it."
            )
        self.model = CLIPModel.from_pretrained(path, local_files_only=True).to(device).eval()
        self.processor = CLIPProcessor.from_pretrained(path, local_files_only=True)
        self.device = device

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        pixels = self.processor(images=list(images), return_tensors="pt")["pixel_values"]
        out = self.model.get_image_features(pixel_values=pixels.to(self.device))
        return _projected(out).float().cpu()

    @torch.no_grad()
    def score(self, image_features: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """``(N,)`` CLIP scores of image features ``(N, D)`` against their prompts."""
        tokens = self.processor(
            text=prompts, return_tensors="pt", padding=True, truncation=True
        ).to(self.device)
        text = _projected(self.model.get_text_features(**tokens)).float().cpu()
        cosine = torch.nn.functional.cosine_similarity(image_features, text, dim=-1)
        return 100 * cosine.clamp(min=0)


def _projected(output: Any) -> torch.Tensor:
    """CLIP's projected embeddings: transformers 4 returns the tensor, 5 an output whose
    ``pooler_output`` holds it."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """``(N, 3, H, W)`` in [-1, 1] -> uint8 on the CPU, rounded as a saved PNG is."""
    return images.detach().float().add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8).cpu()


def to_signed(images: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 in [-1, 1]."""
    return images.float().div(127.5).sub(1)
