"""FLUX.1 Kontext students on toy ``FluxTransformer2DModel`` instances: the teacher is the stock
Kontext step (the pipeline's own packing, ids and slicing) bit for bit, the student starts at the
teacher's velocity, the source image is read, and the adapter round trip is exact."""

from __future__ import annotations

import copy

import pytest
import torch
from diffusers import FluxKontextPipeline

from arcflow.models.student import ArcFlowStudent

SIGMA = torch.tensor([0.8, 0.8])
ARCH = "flux_kontext"


def stock_kontext_velocity(base, x, sigma, cond, guidance):
    """One transformer call as ``FluxKontextPipeline.__call__`` makes it, with its helpers:
    ``(B, C, H, W)`` float32."""
    b, c, h, w = x.shape
    source = cond["image_latents"]
    pipe = FluxKontextPipeline
    latents = pipe._pack_latents(x, b, c, h, w)
    image_latents = pipe._pack_latents(source, b, c, *source.shape[-2:])
    latent_ids = pipe._prepare_latent_image_ids(b, h // 2, w // 2, "cpu", torch.float32)
    image_ids = pipe._prepare_latent_image_ids(
        b, source.shape[-2] // 2, source.shape[-1] // 2, "cpu", torch.float32
    )
    image_ids[..., 0] = 1
    out = base(
        hidden_states=torch.cat([latents, image_latents], dim=1),
        timestep=sigma,
        guidance=torch.full([1], guidance, dtype=torch.float32).expand(b),
        pooled_projections=cond["pooled_prompt_embeds"],
        encoder_hidden_states=cond["prompt_embeds"],
        txt_ids=torch.zeros(cond["prompt_embeds"].shape[1], 3),
        img_ids=torch.cat([latent_ids, image_ids], dim=0),
        return_dict=False,
    )[0]
    out = out[:, : latents.size(1)]
    return pipe._unpack_latents(out.float(), h * 8, w * 8, vae_scale_factor=8)


def test_teacher_is_the_stock_kontext_step_bit_for_bit(tiny):
    base = tiny.base(ARCH)
    plain = copy.deepcopy(base)
    student = ArcFlowStudent(base, ARCH, num_components=3, lora_rank=2, lora_dropout=0.0).eval()
    tiny.randomize(student)  # LoRA, heads and modulation moved: teacher mode must not see them
    x, cond = tiny.latents(), tiny.cond(ARCH)
    assert student.guidance_scale == 2.5  # Kontext [dev]'s recommended guidance
    with torch.no_grad():
        ours = student.teacher_velocity(x, SIGMA, cond)
        theirs = stock_kontext_velocity(plain, x, SIGMA, cond, 2.5)
    assert torch.equal(ours, theirs)


def test_the_source_image_steers_the_velocity(tiny):
    student = tiny.student(ARCH).eval()
    x, cond = tiny.latents(), tiny.cond(ARCH)
    other = dict(cond, image_latents=torch.randn_like(cond["image_latents"]))
    with torch.no_grad():
        a = student.teacher_velocity(x, SIGMA, cond)
        b = student.teacher_velocity(x, SIGMA, other)
        policy = student.student_policy(x, SIGMA, cond)
    assert (a - b).abs().max() > 1e-3
    assert policy.velocity_means.shape[-2:] == x.shape[-2:]  # the noisy tokens only


def test_student_velocity_at_sigma_src_equals_teacher_at_init(tiny):
    student = tiny.student(ARCH, num_components=4, mean_bias_noise_std=0.0).eval()
    x, cond = tiny.latents(), tiny.cond(ARCH)
    with torch.no_grad():
        policy = student.student_policy(x, SIGMA, cond)
        teacher = student.teacher_velocity(x, SIGMA, cond)
    torch.testing.assert_close(policy.velocity(SIGMA), teacher, rtol=1e-5, atol=1e-6)


def test_two_nfe_edit_sample_and_adapter_round_trip(tiny, tmp_path):
    class_name, ours, again = tiny.adapter_round_trip(ARCH, tmp_path)
    assert class_name == "ArcFluxKontextTransformer2DModel"
    assert torch.isfinite(ours).all() and torch.equal(ours, again)


def test_missing_source_image_is_named(tiny):
    student = tiny.student(ARCH).eval()
    cond = tiny.cond("flux")
    with pytest.raises(KeyError, match=r"cond\['image_latents'\] \(B, C, H', W'\)"):
        student.teacher_velocity(tiny.latents(), SIGMA, cond)
    bad = dict(cond, image_latents=torch.zeros(1, 4, 4, 4))
    with pytest.raises(ValueError, match="must be batched and have channels like the latents"):
        student.teacher_velocity(tiny.latents(), SIGMA, bad)
