"""The general flow-matching trainer: data and guidance-distillation targets, and a per-pixel loss
weight that reaches it from the data."""

from __future__ import annotations

import pytest
import torch
from tiny_models import fixed_loss, scene_batch, text_and_vae_stacks, train_steps
from torch.utils.data import default_collate

from arcflow.models.loading import build_transformer
from arcflow.tinyworld.architectures import LATENT_CHANNELS, transformer_config
from arcflow.tinyworld.flow_matching import FlowMatchingTrainer, sample_sigmas
from arcflow.tinyworld.scene_latents import SceneLatentDataset


@pytest.fixture(scope="module")
def stacks(tmp_path_factory) -> dict[str, str]:
    return text_and_vae_stacks(tmp_path_factory.mktemp("stacks"))


def test_sigma_sampling_and_shift():
    torch.manual_seed(0)
    sigma = sample_sigmas(10_000, "logit_normal")
    assert 0 < sigma.min() and sigma.max() < 1 and abs(sigma.median() - 0.5) < 0.03
    generator = torch.Generator().manual_seed(0)
    shifted = sample_sigmas(10_000, "uniform", shift=3.0, generator=generator)
    plain = torch.rand(10_000, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(shifted, 3 * plain / (1 + 2 * plain))


@pytest.mark.parametrize("arch", ["flux", "qwen_image"])
def test_flow_matching_lowers_loss_on_a_fixed_batch(stacks, arch):
    model = FlowMatchingTrainer(
        arch,
        dict(from_config=transformer_config(arch)),
        stacks[arch],
        text_dropout=0.5,
        guidance_scale=1.0 if arch == "flux" else None,
    )
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("transformer.") for n in trainable)
    batch = scene_batch()
    if arch == "flux":  # both losses: with and without a loss weight
        batch["loss_weight"] = 1.0 + torch.rand(4, 1, 16, 16)
    before = fixed_loss(model, batch)
    train_steps(model, batch, steps=8, lr=2e-3)
    assert fixed_loss(model, batch) < 0.8 * before


def test_guidance_distillation_target(stacks, tmp_path):
    """Stage B regresses the frozen model's CFG velocity; at g = 1 it is the conditional one."""
    torch.manual_seed(0)
    stage_a = build_transformer("flux", transformer_config("flux"), device="cpu")
    stage_a.save_pretrained(tmp_path / "transformer")
    source = dict(from_pretrained=str(tmp_path), subfolder="transformer")
    model = FlowMatchingTrainer(
        "flux", source, stacks["flux"], cfg_teacher=dict(transformer=source, guidance_scale=1.0)
    )
    batch = scene_batch(2)
    encoded = model.prompt_encoder(batch["prompt"])
    empty = model.empty_conditioning(encoded)
    x, sigma = torch.randn(2, LATENT_CHANNELS, 16, 16), torch.tensor([0.3, 0.8])
    with torch.no_grad():
        plain = model.arch.teacher_velocity(model.cfg_teacher, x, sigma, encoded, 1.0)
        torch.testing.assert_close(model.guided_target(x, sigma, encoded, empty, 1.0), plain)
        negative = {key: value.expand(2, *value.shape[1:]) for key, value in empty.items()}
        u_neg = model.arch.teacher_velocity(model.cfg_teacher, x, sigma, negative, 1.0)
        guided = model.guided_target(x, sigma, encoded, empty, 3.0)
        # One scale per sample: row i is the target at g_i, and the embedded guidance too.
        per_sample = model.guided_target(x, sigma, encoded, empty, torch.tensor([1.0, 3.0]))
        embedded = model.arch.teacher_velocity(
            model.transformer, x, sigma, encoded, torch.tensor([2.0, 5.0])
        )
        embedded_at = [
            model.arch.teacher_velocity(model.transformer, x, sigma, encoded, g) for g in (2.0, 5.0)
        ]
    torch.testing.assert_close(guided, u_neg + 3.0 * (plain - u_neg), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(per_sample[0], plain[0])
    torch.testing.assert_close(per_sample[1], guided[1])
    torch.testing.assert_close(embedded[0], embedded_at[0][0])
    torch.testing.assert_close(embedded[1], embedded_at[1][1])
    assert not torch.allclose(embedded_at[0][1], embedded_at[1][1])  # the guidance input acts
    for per_sample_draws in (False, True):
        model.guidance_per_sample = per_sample_draws
        train_steps(model, batch, steps=1, lr=1e-3)
    assert not any(p.requires_grad for p in model.cfg_teacher.parameters())


def test_loss_weight_from_the_data_is_the_object_weighted_loss(stacks, tmp_path):
    """``SceneLatentDataset(object_weight=W)`` + the trainer give, bit for bit, the loss the trainer
    computed itself before the weight came from the data: ``mean((1 + W m) (v - u)^2)`` with ``m``
    the cached object mask, here computed independently from the same random draws."""
    weight = 4.0
    plain = SceneLatentDataset(stacks["flux"], size=6, seed=0, cache_dir=str(tmp_path))
    weighted = SceneLatentDataset(
        stacks["flux"], size=6, seed=0, cache_dir=str(tmp_path), object_weight=weight
    )
    assert "loss_weight" not in plain[0]  # W = 0: the plain loss, no weight map
    batch = default_collate([weighted[i] for i in range(6)])
    mask = weighted.mask[:6]
    assert batch["loss_weight"].shape == (6, 1, 16, 16) and 0 < mask.mean() < 0.5
    torch.manual_seed(0)
    model = FlowMatchingTrainer(
        "flux", dict(from_config="tiny"), stacks["flux"], text_dropout=0.5, guidance_scale=1.0
    )
    got = fixed_loss(model, batch)

    torch.manual_seed(123)  # the trainer's draws, in its order: sigma, noise, text dropout
    with torch.no_grad():
        x0 = batch["latents"].float()
        encoded = model.prompt_encoder(list(batch["prompt"]))
        cond = {k: v for k, v in encoded.items() if not k.startswith("negative_")}
        empty = model.empty_conditioning(encoded)
        sigma = sample_sigmas(6, "logit_normal", model.shift)
        eps = torch.randn_like(x0)
        drop = torch.rand(6) < 0.5
        cond = {
            k: torch.where(drop.view(-1, *[1] * (v.dim() - 1)), empty[k].expand_as(v), v)
            for k, v in cond.items()
        }
        s = sigma.view(-1, 1, 1, 1)
        x_sigma = (1 - s) * x0 + s * eps
        u = model.arch.teacher_velocity(model.transformer, x_sigma, sigma, cond, 1.0)
        error = (u.float() - (eps - x0)).pow(2)
        expected = (error * (1.0 + weight * mask)).mean()
        unweighted = error.mean()
    assert got == float(expected)  # bitwise: the same operations on the same values
    assert got != pytest.approx(float(unweighted), rel=1e-3)  # and the weight acts
    assert fixed_loss(model, default_collate([plain[i] for i in range(6)])) == float(unweighted)
    with pytest.raises(ValueError, match="per latent pixel"):
        model.loss({**batch, "loss_weight": torch.ones(6, 1, 64, 64)})
