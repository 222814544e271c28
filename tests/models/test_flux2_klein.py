"""FLUX.2 [klein] students on toy ``Flux2Transformer2DModel`` instances: the teacher is the stock
klein base step (its patchify, pack, 4-axis ids, true CFG and unpack) bit for bit, the student
starts at the teacher's velocity, the adapter round trip is exact, and the full-size klein 4B
builds on the meta device."""

from __future__ import annotations

import copy

import pytest
import torch
from diffusers import Flux2KleinPipeline

from arcflow.models.arch import get_arch
from arcflow.models.loading import build_transformer
from arcflow.models.student import ArcFlowStudent

SIGMA = torch.tensor([0.8, 0.8])
ARCH = "flux2_klein"


def stock_klein_velocity(base, x, sigma, cond, guidance_scale):
    """One step of ``Flux2KleinPipeline.__call__`` with its own helpers: ``(B, C, H, W)``."""
    pipe = Flux2KleinPipeline
    patches = pipe._patchify_latents(x)  # (B, 4C, H/2, W/2)
    latents = pipe._pack_latents(patches)
    latent_ids = pipe._prepare_latent_ids(patches)

    def forward(embeds):
        out = base(
            hidden_states=latents,
            timestep=sigma,
            guidance=None,
            encoder_hidden_states=embeds,
            txt_ids=pipe._prepare_text_ids(embeds),
            img_ids=latent_ids,
            return_dict=False,
        )[0]
        return out[:, : latents.size(1) :]

    noise_pred = forward(cond["prompt_embeds"])
    if guidance_scale > 1:  # the pipeline's do_classifier_free_guidance (klein base)
        neg_noise_pred = forward(cond["negative_prompt_embeds"])
        noise_pred = neg_noise_pred + guidance_scale * (noise_pred - neg_noise_pred)
    unpacked = pipe._unpack_latents_with_ids(noise_pred.float(), latent_ids)
    return pipe._unpatchify_latents(unpacked)


def test_teacher_is_the_stock_klein_step(tiny):
    base = tiny.base(ARCH)
    plain = copy.deepcopy(base)
    student = ArcFlowStudent(base, ARCH, num_components=3, lora_rank=2, lora_dropout=0.0).eval()
    tiny.randomize(student)  # LoRA, heads and modulation moved: teacher mode must not see them
    x = tiny.latents()
    assert student.guidance_scale == 4.0
    # One forward (guidance 1): the stock step bit for bit.
    cond = tiny.cond(ARCH)
    with torch.no_grad():
        ours = student.teacher_velocity(x, SIGMA, cond, guidance_scale=1.0)
        theirs = stock_klein_velocity(plain, x, SIGMA, cond, 1.0)
    assert torch.equal(ours, theirs)
    # True CFG, as two forwards (another negative length) and as one doubled batch: to float
    # round-off (the text length changes which kernels the attention takes).
    for negative_len in (3, 5):
        cond = tiny.cond(ARCH, negative_len=negative_len)
        with torch.no_grad():
            ours = student.teacher_velocity(x, SIGMA, cond)
            theirs = stock_klein_velocity(plain, x, SIGMA, cond, 4.0)
            single = student.teacher_velocity(x, SIGMA, cond, guidance_scale=1.0)
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
        assert (ours - single).abs().max() > 1e-2  # the guidance does something


def test_student_velocity_at_sigma_src_equals_teacher_at_init(tiny):
    student = tiny.student(ARCH, num_components=4, mean_bias_noise_std=0.0).eval()
    x, cond = tiny.latents(), tiny.cond(ARCH)
    with torch.no_grad():
        policy = student.student_policy(x, SIGMA, cond)
        teacher = student.teacher_velocity(x, SIGMA, cond, guidance_scale=1.0)
    torch.testing.assert_close(policy.velocity(SIGMA), teacher, rtol=1e-5, atol=1e-6)
    # The teacher's head has no bias; the heads start from its weight alone.
    assert student.head.teacher_proj.bias is None


def test_two_nfe_sample_and_adapter_round_trip(tiny, tmp_path):
    class_name, ours, again = tiny.adapter_round_trip(ARCH, tmp_path)
    assert class_name == "ArcFlux2Transformer2DModel"
    assert torch.isfinite(ours).all() and torch.equal(ours, again)


def test_released_lora_targets_and_full_size_on_meta():
    adapter = get_arch(ARCH)
    full = build_transformer(ARCH, "full")  # FLUX.2 [klein] 4B, no memory
    base = sum(p.numel() for p in full.parameters())
    assert base / 1e9 == pytest.approx(3.88, abs=0.01)
    targets = adapter.lora_targets(full)
    assert len(targets) == 5 * 4 + 20 + 2  # dual-stream MLPs, single-stream outputs, time MLP
    assert not any("to_qkv_mlp_proj" in t or ".attn.to_q" in t for t in targets)
    with_attention = adapter.lora_targets(full, attention=True)
    assert len(with_attention) == len(targets) + 5 * 8 + 20


def test_a_guidance_embedded_flux2_is_refused(tiny):
    config = dict(tiny.configs[ARCH], guidance_embeds=True)
    with pytest.raises(ValueError, match=r"embeds its guidance \(FLUX.2 \[dev\]\)"):
        ArcFlowStudent(build_transformer(ARCH, config, device="cpu"), ARCH, num_components=2)
