"""Distilling an editing model from images to edit and their instructions: EditImageDataset
encodes the images once as the teacher's condition latents, and one FLUX.1 Kontext distillation
step on the shipped tiny FLUX stack trains on them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import default_collate

from arcflow.data.image_latents import EditImageDataset, image_to_tensor
from arcflow.models.distiller import ArcFlowDistiller
from arcflow.models.vae import LatentCodec, load_vae
from arcflow.tinyworld.edits import sample_edit, write_edit_pairs
from arcflow.tinyworld.scenes import render

STACK = str(Path(__file__).resolve().parents[2] / "checkpoints" / "tiny-flux")


def test_images_to_edit_become_condition_latents_and_train_a_kontext_student(tmp_path):
    records = write_edit_pairs(tmp_path / "edits", 3, seed=0)
    dataset = EditImageDataset(STACK, str(records), resolution=64, cache_dir=str(tmp_path))
    first = sample_edit("train", 0, 0)
    assert set(dataset[0]) == {"image_latents", "prompt"}
    assert dataset[0]["prompt"] == first.instruction  # read from the 'instruction' field
    with torch.no_grad():
        pixels = image_to_tensor(render(first.source))[None]
        expected = LatentCodec(load_vae(STACK)).encode(pixels, sample=False)[0]
    torch.testing.assert_close(dataset[0]["image_latents"], expected, rtol=1e-2, atol=1e-2)

    batch = default_collate([dataset[0], dataset[1]])
    student = dict(
        arch="flux_kontext",
        transformer=dict(from_pretrained=STACK, subfolder="transformer"),
        num_components=3,
        lora_rank=2,
        lora_alpha=2,
        lora_dropout=0.0,
    )
    encoder = dict(arch="flux_kontext", pretrained=STACK, max_sequence_length=32)
    distiller = ArcFlowDistiller(student, encoder, teacher_ratio_decay=2, latent_size=(4, 4))
    cond = distiller.conditioning(batch)
    assert torch.equal(cond["image_latents"], batch["image_latents"])
    # The edited image is drawn at the source's size, not the configured latent_size.
    assert distiller._latent_shape(batch, 2) == (2, *expected.shape)

    losses = distiller.rollout_losses(batch, iteration=0)
    assert all(torch.isfinite(v) for v in losses.values())
    other = dict(batch, image_latents=batch["image_latents"].flip(-1))
    moved = distiller.rollout_losses(other, iteration=0)
    assert not np.isclose(float(sum(losses.values())), float(sum(moved.values())))

    from mmengine.optim import OptimWrapper

    params = dict(distiller.student.trainable_named_parameters())
    before = {name: p.detach().clone() for name, p in params.items()}
    wrapper = OptimWrapper(torch.optim.Adam(list(params.values()), lr=1e-3))
    distiller.train_step(batch, wrapper)
    assert any(not torch.equal(before[n], p) for n, p in params.items())
