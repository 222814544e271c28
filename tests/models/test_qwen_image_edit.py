"""Qwen-Image-Edit students on toy ``QwenImageTransformer2DModel`` instances: the teacher is the
stock edit step (the pipeline's packing, image shapes, slicing and norm-keeping true CFG) bit for
bit, the student starts at the teacher's velocity, and the adapter round trip is exact."""

from __future__ import annotations

import copy

import pytest
import torch
from diffusers import QwenImageEditPipeline

from arcflow.models.arch import get_arch
from arcflow.models.student import ArcFlowStudent

SIGMA = torch.tensor([0.8, 0.8])
ARCH = "qwen_image_edit"


def stock_edit_velocity(base, x, sigma, cond, true_cfg_scale):
    """One step of ``QwenImageEditPipeline.__call__`` (both CFG forwards, the norm rescale), with
    its helpers: ``(B, C, H, W)`` float32."""
    b, c, h, w = x.shape
    source = cond["image_latents"]
    pipe = QwenImageEditPipeline
    latents = pipe._pack_latents(x, b, c, h, w)
    image_latents = pipe._pack_latents(source, b, c, *source.shape[-2:])
    img_shapes = [[(1, h // 2, w // 2), (1, source.shape[-2] // 2, source.shape[-1] // 2)]] * b

    def forward(embeds, mask):
        out = base(
            hidden_states=torch.cat([latents, image_latents], dim=1),
            timestep=sigma,
            guidance=None,
            encoder_hidden_states_mask=mask,
            encoder_hidden_states=embeds,
            img_shapes=img_shapes,
            return_dict=False,
        )[0]
        return out[:, : latents.size(1)]

    noise_pred = forward(cond["prompt_embeds"], cond["prompt_embeds_mask"]).float()
    neg = forward(cond["negative_prompt_embeds"], cond["negative_prompt_embeds_mask"]).float()
    comb_pred = neg + true_cfg_scale * (noise_pred - neg)
    cond_norm = torch.norm(noise_pred, dim=-1, keepdim=True)
    noise_norm = torch.norm(comb_pred, dim=-1, keepdim=True)
    noise_pred = comb_pred * (cond_norm / noise_norm)
    return pipe._unpack_latents(noise_pred, h * 8, w * 8, vae_scale_factor=8).squeeze(2)


def test_teacher_is_the_stock_edit_step(tiny):
    base = tiny.base(ARCH)
    plain = copy.deepcopy(base)
    student = ArcFlowStudent(base, ARCH, num_components=3, lora_rank=2, lora_dropout=0.0).eval()
    tiny.randomize(student)  # LoRA, heads and modulation moved: teacher mode must not see them
    x = tiny.latents()
    # Another negative length than the prompt's: two forwards, as the stock pipeline runs them.
    cond = tiny.cond(ARCH, negative_len=3)
    assert student.guidance_scale == 4.0
    with torch.no_grad():
        ours = student.teacher_velocity(x, SIGMA, cond)
        theirs = stock_edit_velocity(plain, x, SIGMA, cond, 4.0)
    assert torch.equal(ours, theirs)
    # The same negative length runs one doubled batch: equal to float round-off.
    same = tiny.cond(ARCH)
    with torch.no_grad():
        doubled = student.teacher_velocity(x, SIGMA, same)
        reference = stock_edit_velocity(plain, x, SIGMA, same, 4.0)
        plain_cfg = get_arch("qwen_image").teacher_velocity(plain, x, SIGMA, same, 4.0)
    torch.testing.assert_close(doubled, reference, rtol=1e-5, atol=1e-5)
    # Without the source image and the norm rescale the step is another one.
    assert (plain_cfg - reference).abs().max() > 1e-3


def test_student_velocity_at_sigma_src_equals_teacher_at_init(tiny):
    student = tiny.student(ARCH, num_components=4, mean_bias_noise_std=0.0).eval()
    x, cond = tiny.latents(), tiny.cond(ARCH)
    with torch.no_grad():
        policy = student.student_policy(x, SIGMA, cond)
        teacher = student.teacher_velocity(x, SIGMA, cond, guidance_scale=1.0)
        other = dict(cond, image_latents=torch.randn_like(cond["image_latents"]))
        moved = student.teacher_velocity(x, SIGMA, other, guidance_scale=1.0)
    torch.testing.assert_close(policy.velocity(SIGMA), teacher, rtol=1e-5, atol=1e-6)
    assert (moved - teacher).abs().max() > 1e-3  # the source image is read


def test_two_nfe_edit_sample_and_adapter_round_trip(tiny, tmp_path):
    class_name, ours, again = tiny.adapter_round_trip(ARCH, tmp_path)
    assert class_name == "ArcQwenImageEditTransformer2DModel"
    assert torch.isfinite(ours).all() and torch.equal(ours, again)


def test_missing_source_image_and_text_only_encoding_are_refused(tiny):
    student = tiny.student(ARCH).eval()
    with pytest.raises(KeyError, match=r"cond\['image_latents'\]"):
        student.teacher_velocity(tiny.latents(), SIGMA, tiny.cond("qwen_image"))
    with pytest.raises(NotImplementedError, match="together with its source image"):
        get_arch(ARCH).encode_prompts(None, ["make the circle blue"], "cpu", 64, "")
