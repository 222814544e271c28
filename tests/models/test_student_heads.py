"""Latent packing, the ArcFlow head (layout and initialisation) and the forked modulation."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import FluxPipeline, QwenImagePipeline
from torch import nn

from arcflow.models.heads import ArcFlowHead, ForkedLinear
from arcflow.models.packing import flux_image_ids, pack_latents, unpack_tokens


def test_packing_matches_the_diffusers_pipelines():
    x = torch.randn(2, 4, 8, 6)
    packed = pack_latents(x)
    torch.testing.assert_close(packed, FluxPipeline._pack_latents(x, 2, 4, 8, 6), rtol=0, atol=0)
    torch.testing.assert_close(
        packed, QwenImagePipeline._pack_latents(x, 2, 4, 8, 6), rtol=0, atol=0
    )
    # The pipelines unpack from pixel sizes: latent size * vae_scale_factor.
    unpacked = FluxPipeline._unpack_latents(packed, 8 * 8, 6 * 8, vae_scale_factor=8)
    torch.testing.assert_close(unpack_tokens(packed.unsqueeze(2), 8, 6)[:, 0], unpacked)
    torch.testing.assert_close(unpacked, x, rtol=0, atol=0)
    ids = FluxPipeline._prepare_latent_image_ids(2, 4, 3, "cpu", torch.float32)
    torch.testing.assert_close(flux_image_ids(8, 6, "cpu"), ids, rtol=0, atol=0)


def test_head_index_order_is_component_then_diffusers_packing():
    """Feature k*(C*p*p) + c*p*p + i*p + j of token (r, s) is pixel (2r+i, 2s+j), channel c, of
    component k; logits and log-rates likewise with one channel."""
    b, k, c, h, w = 2, 3, 4, 4, 6
    means = torch.randn(b, k, c, h, w)
    logits = torch.randn(b, k, 1, h, w)
    log_rates = torch.randn(b, k - 1, 1, h, w)
    # Per-component tokens with the pipeline's own packing, components side by side.
    tokens = torch.cat(
        [
            torch.stack(
                [FluxPipeline._pack_latents(t[:, i], b, t.shape[2], h, w) for i in range(n)], 2
            ).flatten(2)
            for t, n in ((means, k), (logits, k), (log_rates, k - 1))
        ],
        dim=-1,
    )
    # Spot-check one feature by its documented index, without any helper.
    r, s, kk, cc, i, j = 1, 2, 2, 3, 1, 0
    token = tokens[0, r * (w // 2) + s]
    assert token[kk * c * 4 + cc * 4 + i * 2 + j] == means[0, kk, cc, 2 * r + i, 2 * s + j]
    assert token[k * c * 4 + kk * 4 + i * 2 + j] == logits[0, kk, 0, 2 * r + i, 2 * s + j]
    assert token[k * c * 4 + k * 4 + 1 * 4 + i * 2 + j] == log_rates[0, 1, 0, 2 * r + i, 2 * s + j]

    head = ArcFlowHead(nn.Linear(8, c * 4), num_components=k)
    split = head.split(tokens)
    for got, want in zip(split, (means, logits, log_rates)):
        torch.testing.assert_close(unpack_tokens(got, h, w), want, rtol=0, atol=0)


def test_head_initialisation_follows_the_method():
    k, c, pp, inner = 16, 16, 4, 32
    teacher = nn.Linear(inner, c * pp)
    head = ArcFlowHead(
        teacher, k, mean_bias_noise_std=0.05, generator=torch.Generator().manual_seed(0)
    )

    torch.testing.assert_close(
        head.means.weight.view(k, c * pp, inner), teacher.weight.expand(k, -1, -1)
    )
    noise = (head.means.bias - teacher.bias.repeat(k)).detach().view(k, c, pp)
    torch.testing.assert_close(noise, noise[..., :1].expand(-1, -1, pp))  # shared by sub-pixels
    assert 0.04 < noise[..., 0].std().item() < 0.06  # 256 draws of N(0, 0.05^2)
    assert not head.logits.weight.any() and not head.logits.bias.any()
    assert not head.log_rates.weight.any()
    gamma = head.log_rates.bias.detach().double().exp().view(k - 1, pp)
    torch.testing.assert_close(gamma, gamma[:, :1].expand(-1, pp))  # repeated per sub-pixel
    torch.testing.assert_close(gamma[[0, -1], 0], torch.tensor([0.2, 4.0], dtype=torch.float64))
    ratios = gamma[1:, 0] / gamma[:-1, 0]
    torch.testing.assert_close(ratios, ratios[:1].expand_as(ratios))  # log-spaced
    assert math.isclose(ratios[0].item(), 20 ** (1 / (k - 2)), rel_tol=1e-6)

    again = ArcFlowHead(teacher, k, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.means.bias, head.means.bias)
    exact = ArcFlowHead(teacher, k, mean_bias_noise_std=0.0)
    assert torch.equal(exact.means.bias, teacher.bias.repeat(k))


def test_head_rate_span_is_configurable():
    teacher = nn.Linear(8, 16)
    head = ArcFlowHead(teacher, 4, log_gamma_range=(-30.0, 1.5))
    rates = head.log_rates.bias.detach().view(3, 4)
    torch.testing.assert_close(rates[:, 0], torch.tensor([-30.0, -14.25, 1.5]))
    with pytest.raises(ValueError, match="r_min <= r_max"):
        ArcFlowHead(teacher, 4, log_gamma_range=(1.0, -1.0))


def test_head_modes_and_single_component():
    teacher = nn.Linear(8, 16)
    head = ArcFlowHead(teacher, num_components=1)
    assert head.log_rates is None
    hidden = torch.randn(2, 5, 8)
    out = head(hidden)
    assert out.shape == (2, 5, head.student_features) == (2, 5, 16 + 4)
    means, logits, log_rates = head.split(out)
    assert means.shape == (2, 5, 1, 16) and logits.shape == (2, 5, 1, 4) and log_rates is None
    head.student_mode = False
    assert torch.equal(head(hidden), teacher(hidden))
    with pytest.raises(ValueError, match="teacher mode"):
        head.split(head(hidden))


def test_forked_linear_keeps_the_teacher():
    teacher = nn.Linear(8, 6)
    forked = ForkedLinear(teacher)
    x = torch.randn(3, 8)
    assert torch.equal(forked(x), teacher(x))
    assert not any(p.requires_grad for p in forked.teacher.parameters())
    with torch.no_grad():
        forked.student.weight.add_(1.0)
    assert not torch.equal(forked(x), teacher(x))
    forked.student_mode = False
    assert torch.equal(forked(x), teacher(x))
