"""ImageLatentDataset: captioned image files encoded once by a stack's VAE (the data variant's
latents at full size), on the shipped tiny FLUX stack."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from arcflow.data.image_latents import ImageLatentDataset, square_image
from arcflow.models.vae import LatentCodec, load_vae

STACK = str(Path(__file__).resolve().parents[2] / "checkpoints" / "tiny-flux")


@pytest.fixture
def records(tmp_path: Path) -> Path:
    """Three images of different shapes in a sub-folder, listed with paths relative to the file."""
    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    lines = []
    for i, (height, width) in enumerate([(64, 80), (96, 64), (64, 64)]):
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / "images" / f"{i}.png")
        lines.append(json.dumps({"image": f"images/{i}.png", "prompt": f"picture {i}"}))
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_images_are_encoded_once_to_the_vae_latents(records, tmp_path, monkeypatch):
    dataset = ImageLatentDataset(STACK, str(records), resolution=64, cache_dir=str(tmp_path))
    assert len(dataset) == 3 and dataset[1]["prompt"] == "picture 1"
    codec = LatentCodec(load_vae(STACK))
    image = square_image(records.parent / "images" / "1.png", 64)
    assert image.shape == (3, 64, 64)
    with torch.no_grad():
        expected = codec.encode(image[None], sample=False)[0]
    assert dataset[1]["latents"].shape == expected.shape == (16, 16, 16)
    torch.testing.assert_close(dataset[1]["latents"], expected, rtol=1e-2, atol=1e-2)  # bf16

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the cached latents were encoded again")

    monkeypatch.setattr(ImageLatentDataset, "_build", no_rebuild)
    again = ImageLatentDataset(STACK, str(records), resolution=64, cache_dir=str(tmp_path))
    assert torch.equal(again.latents, dataset.latents)


def test_a_missing_image_is_named_with_its_line(records, tmp_path):
    (records.parent / "images" / "2.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"train.jsonl:3: image .*2.png does not exist"):
        ImageLatentDataset(STACK, str(records), resolution=64, cache_dir=str(tmp_path / "cache"))
