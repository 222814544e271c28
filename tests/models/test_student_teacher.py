"""ArcFlowStudent on tiny real FLUX and Qwen-Image transformers: student/teacher equivalences,
guidance, the trainable set, dtypes and gradient checkpointing."""

from __future__ import annotations

import copy

import pytest
import torch
from diffusers import FluxPipeline

from arcflow.models import ArcFlowStudent, build_transformer, released_lora_targets

ARCHS = ("flux", "qwen_image")
SIGMA = torch.tensor([0.9, 0.4])


def plain_velocity(base, arch, x, sigma, cond, guidance=None, prompt="prompt_embeds"):
    """The base model called the way the diffusers pipelines call it: ``(B, C, H, W)`` float32."""
    b, c, h, w = x.shape
    dtype = base.x_embedder.weight.dtype if arch == "flux" else base.img_in.weight.dtype
    packed = FluxPipeline._pack_latents(x.to(dtype), b, c, h, w)
    embeds = cond[prompt].to(dtype)
    if arch == "flux":
        out = base(
            hidden_states=packed,
            encoder_hidden_states=embeds,
            pooled_projections=cond["pooled_prompt_embeds"].to(dtype),
            timestep=sigma,
            img_ids=FluxPipeline._prepare_latent_image_ids(b, h // 2, w // 2, "cpu", torch.float32),
            txt_ids=torch.zeros(embeds.shape[1], 3),
            guidance=torch.full((b,), guidance),
            return_dict=False,
        )[0]
    else:
        out = base(
            hidden_states=packed,
            encoder_hidden_states=embeds,
            encoder_hidden_states_mask=cond[f"{prompt}_mask"],
            timestep=sigma,
            img_shapes=[[(1, h // 2, w // 2)]] * b,
            return_dict=False,
        )[0]
    return FluxPipeline._unpack_latents(out.float(), h * 8, w * 8, vae_scale_factor=8)


def lora_flags(student):
    return {n: p.requires_grad for n, p in student.trainable_named_parameters() if "lora_" in n}


@pytest.mark.parametrize("arch", ARCHS)
def test_student_velocity_at_sigma_src_equals_teacher_at_init(arch, tiny):
    student = tiny.student(arch, num_components=4, mean_bias_noise_std=0.0).eval()
    x, cond = tiny.latents(), tiny.cond(arch)
    # Same guidance on both sides: FLUX embeds 3.5 in both; the Qwen student has no CFG.
    teacher_scale = None if arch == "flux" else 1.0
    with torch.no_grad():
        policy = student.student_policy(x, SIGMA, cond)
        teacher = student.teacher_velocity(x, SIGMA, cond, guidance_scale=teacher_scale)
    assert policy.velocity_means.shape == (2, 4, 4, 8, 6)
    assert policy.logits.shape == (2, 4, 1, 8, 6) and policy.log_rates.shape == (2, 3, 1, 8, 6)
    torch.testing.assert_close(policy.velocity(SIGMA), teacher, rtol=1e-5, atol=1e-6)
    # Away from sigma_src the momentum rates bend the velocity.
    assert not torch.allclose(policy.velocity(SIGMA * 0.5), teacher, atol=1e-3)
    # Initial log-rates: the released span ln 0.2 .. ln 4, or the student's log_gamma_range.
    torch.testing.assert_close(
        policy.log_rates[:, :, 0],
        torch.tensor([-1.6094, -0.1116, 1.3863]).view(1, 3, 1, 1).expand(2, 3, 8, 6),
        atol=1e-4,
        rtol=0,
    )
    fast = tiny.student(arch, num_components=4, log_gamma_range=(-30.0, 0.0)).eval()
    with torch.no_grad():
        rates = fast.student_policy(x, SIGMA, cond).log_rates[:, :, 0]
    torch.testing.assert_close(
        rates, torch.tensor([-30.0, -15.0, 0.0]).view(1, 3, 1, 1).expand(2, 3, 8, 6)
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("arch", ARCHS)
def test_teacher_mode_is_the_plain_base_bit_for_bit(arch, dtype, tiny):
    base = tiny.base(arch, dtype=dtype)
    plain = copy.deepcopy(base)
    student = ArcFlowStudent(base, arch, num_components=3, lora_rank=2, lora_dropout=0.0).eval()
    tiny.randomize(student)  # LoRA B != 0, heads and modulation moved
    x, cond = tiny.latents(), tiny.cond(arch)
    flags = lora_flags(student)
    scale = 3.5 if arch == "flux" else 1.0
    with torch.no_grad():
        teacher = student.teacher_velocity(x, SIGMA, cond, guidance_scale=scale)
        reference = plain_velocity(plain, arch, x, SIGMA, cond, guidance=3.5)
        assert torch.equal(teacher, reference)
        # The student really is different (adapters and heads on), and teacher calls leave it so.
        student_v = student.student_policy(x, SIGMA, cond).velocity(SIGMA)
        assert not torch.allclose(student_v, reference, atol=1e-3)
        with student.teacher_mode():
            assert torch.equal(student.teacher_velocity(x, SIGMA, cond, scale), reference)
        assert torch.equal(student.student_policy(x, SIGMA, cond).velocity(SIGMA), student_v)
    assert lora_flags(student) == flags and all(flags.values())


def test_qwen_teacher_uses_true_cfg_with_negative_embeddings(tiny):
    base = tiny.base("qwen_image")
    plain = copy.deepcopy(base)
    student = ArcFlowStudent(base, "qwen_image", num_components=2, lora_rank=2).eval()
    assert student.guidance_scale == 4.0
    x = tiny.latents()
    # Same text length: one batched forward; another length: two forwards.
    for negative_len in (5, 3):
        cond = tiny.cond("qwen_image", negative_len=negative_len)
        with torch.no_grad():
            u_pos = plain_velocity(plain, "qwen_image", x, SIGMA, cond)
            u_neg = plain_velocity(
                plain, "qwen_image", x, SIGMA, cond, prompt="negative_prompt_embeds"
            )
            teacher = student.teacher_velocity(x, SIGMA, cond)
        torch.testing.assert_close(teacher, u_neg + 4.0 * (u_pos - u_neg), rtol=1e-5, atol=1e-5)
    # One shared negative prompt for the whole batch.
    shared = {**cond, "negative_prompt_embeds": cond["negative_prompt_embeds"][:1]}
    shared["negative_prompt_embeds_mask"] = cond["negative_prompt_embeds_mask"][:1]
    with torch.no_grad():
        same_negative = {
            **cond,
            "negative_prompt_embeds": shared["negative_prompt_embeds"].expand(2, -1, -1),
        }
        torch.testing.assert_close(
            student.teacher_velocity(x, SIGMA, shared),
            student.teacher_velocity(x, SIGMA, same_negative),
            rtol=0,
            atol=0,
        )
    cond.pop("negative_prompt_embeds")
    with pytest.raises(ValueError, match="negative_prompt_embeds"):
        student.teacher_velocity(x, SIGMA, cond)


def test_flux_guidance_follows_the_base(tiny):
    student = tiny.student("flux")
    assert student.guidance_scale == 3.5
    x, cond = tiny.latents(), tiny.cond("flux")
    with torch.no_grad():
        assert not torch.equal(
            student.teacher_velocity(x, SIGMA, cond), student.teacher_velocity(x, SIGMA, cond, 1.0)
        )
    no_guidance = build_transformer(
        "flux", {**tiny.configs["flux"], "guidance_embeds": False}, device="cpu"
    )
    with pytest.raises(ValueError, match="guidance_embeds=False"):
        ArcFlowStudent(no_guidance, "flux", lora_rank=0, guidance_scale=3.5).teacher_velocity(
            x, SIGMA, cond
        )


FLUX_LORA = [
    "time_text_embed.timestep_embedder.linear_1",
    "time_text_embed.timestep_embedder.linear_2",
    "transformer_blocks.0.ff.net.0.proj",
    "transformer_blocks.0.ff.net.2",
    "transformer_blocks.0.ff_context.net.0.proj",
    "transformer_blocks.0.ff_context.net.2",
    "single_transformer_blocks.0.proj_mlp",
    "single_transformer_blocks.0.proj_out",
]
QWEN_LORA = [  # two blocks: the text MLP of the last one (block 1) is not adapted
    "time_text_embed.timestep_embedder.linear_1",
    "time_text_embed.timestep_embedder.linear_2",
    "transformer_blocks.0.img_mlp.net.0.proj",
    "transformer_blocks.0.img_mlp.net.2",
    "transformer_blocks.0.txt_mlp.net.0.proj",
    "transformer_blocks.0.txt_mlp.net.2",
    "transformer_blocks.1.img_mlp.net.0.proj",
    "transformer_blocks.1.img_mlp.net.2",
]
HEADS = ["proj_out.means", "proj_out.logits", "proj_out.log_rates", "norm_out.linear.student"]


@pytest.mark.parametrize("arch, lora", [("flux", FLUX_LORA), ("qwen_image", QWEN_LORA)])
def test_trainable_parameters_are_exactly_the_documented_ones(arch, lora, tiny):
    student = tiny.student(arch)
    expected = {f"transformer.{m}.{leaf}" for m in HEADS for leaf in ("weight", "bias")}
    expected |= {f"transformer.{m}.lora_{ab}.default.weight" for m in lora for ab in "AB"}
    assert {n for n, _ in student.trainable_named_parameters()} == expected
    assert {n for n, p in student.named_parameters() if p.requires_grad} == expected
    assert set(student.trainable_state_dict()) == expected
    lora_b = [p for n, p in student.trainable_named_parameters() if "lora_B" in n]
    assert not any(p.any() for p in lora_b)  # gaussian init: B = 0


def test_released_targets_on_the_full_architectures():
    flux = released_lora_targets("flux", build_transformer("flux", "full"))
    qwen = released_lora_targets("qwen_image", build_transformer("qwen_image", "full"))
    assert len(flux) == 19 * 4 + 38 * 2 + 2 and len(qwen) == 60 * 2 + 59 * 2 + 2
    for name in flux + qwen:
        assert ".attn." not in name and name != "proj_out"
    assert "single_transformer_blocks.37.proj_out" in flux
    assert "transformer_blocks.58.txt_mlp.net.2" in qwen
    assert not any(name.startswith("transformer_blocks.59.txt_mlp") for name in qwen)


def test_attention_targets_on_the_full_architectures():
    flux_base, qwen_base = (
        build_transformer("flux", "full"),
        build_transformer("qwen_image", "full"),
    )
    flux = released_lora_targets("flux", flux_base, attention=True)
    qwen = released_lora_targets("qwen_image", qwen_base, attention=True)
    # Released targets, then 8 projections per dual-stream block, 3 per single-stream block; the
    # last Qwen-Image block's text query and text output projection compute nothing used.
    assert set(released_lora_targets("flux", flux_base)) < set(flux)
    assert len(flux) == 154 + 19 * 8 + 38 * 3 and len(qwen) == 240 + 60 * 8 - 2
    assert {"transformer_blocks.18.attn.add_k_proj", "single_transformer_blocks.37.attn.to_q"} <= {
        *flux
    }
    assert "transformer_blocks.59.attn.add_v_proj" in qwen
    assert not {
        "transformer_blocks.59.attn.add_q_proj",
        "transformer_blocks.59.attn.to_add_out",
    } & {*qwen}


@pytest.mark.parametrize("arch", ARCHS)
def test_every_attention_adapter_reaches_the_policy(arch, tiny):
    """No dead target: each LoRA B (zero at init) gets a gradient from the student's output."""
    student = tiny.student(arch, lora_attention=True)
    names = set(student.lora_layers())
    assert any(".attn.add_k_proj" in name for name in names)
    policy = student.student_policy(tiny.latents(), SIGMA, tiny.cond(arch))
    (policy.velocity_means.square().mean() + policy.logits.square().mean()).backward()
    lora_b = {n: p for n, p in student.trainable_named_parameters() if "lora_B" in n}
    assert len(lora_b) == len(names)
    dead = [n for n, p in lora_b.items() if p.grad is None or not p.grad.any()]
    assert not dead
    with pytest.raises(ValueError, match="list the attention projections there"):
        tiny.student(arch, lora_attention=True, lora_targets=["proj_out"])


def test_trainable_state_dict_round_trip_and_errors(tiny):
    student = tiny.student("flux")
    tiny.randomize(student)
    state = {n: t.clone() for n, t in student.trainable_state_dict().items()}
    fresh = tiny.student("flux")
    fresh.load_trainable_state_dict(state)
    for name, tensor in fresh.trainable_state_dict().items():
        assert torch.equal(tensor, state[name])

    key = "transformer.proj_out.means.bias"
    with pytest.raises(ValueError, match="missing: .*proj_out.means.bias"):
        fresh.load_trainable_state_dict({n: t for n, t in state.items() if n != key})
    with pytest.raises(ValueError, match="unexpected: .*transformer.bogus"):
        fresh.load_trainable_state_dict({**state, "transformer.bogus": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"proj_out.means.bias: checkpoint \(3,\)"):
        fresh.load_trainable_state_dict({**state, key: torch.zeros(3)})
    result = fresh.load_trainable_state_dict({key: state[key]}, strict=False)
    assert key not in result.missing and len(result.missing) == len(state) - 1


@pytest.mark.parametrize("arch", ARCHS)
def test_half_precision_and_float32_trainables(arch, tiny):
    x, cond = tiny.latents(), tiny.cond(arch)
    for dtype in (torch.bfloat16, torch.float16):
        student = tiny.student(arch, dtype=dtype)
        with torch.no_grad():
            policy = student.student_policy(x, SIGMA, cond)
            teacher = student.teacher_velocity(x, SIGMA, cond)
        assert policy.velocity_means.dtype == dtype and teacher.dtype == torch.float32
        assert torch.isfinite(policy.velocity(SIGMA)).all() and torch.isfinite(teacher).all()

    # fp32 trainable tensors on a bf16 base: the base stays bf16, gradients arrive in fp32.
    student = tiny.student(arch, dtype=torch.bfloat16, trainable_dtype="float32")
    trainable = dict(student.trainable_named_parameters())
    assert all(p.dtype == torch.float32 for p in trainable.values())
    assert all(
        p.dtype == torch.bfloat16 for n, p in student.named_parameters() if n not in trainable
    )
    tiny.randomize(student)
    student.student_policy(x, SIGMA, cond).velocity(SIGMA).square().mean().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in trainable.values())

    # Cast for sampling (as load_arcflow_adapter gives the student): every tensor bf16, the same
    # policy up to bf16 rounding of the trainable tensors.
    with torch.no_grad():
        before = student.student_policy(x, SIGMA, cond).velocity(SIGMA)
        student.set_trainable_dtype(torch.bfloat16)
        after = student.student_policy(x, SIGMA, cond).velocity(SIGMA)
    assert {p.dtype for p in student.parameters()} == {torch.bfloat16}
    assert torch.allclose(after.float(), before.float(), atol=0.05, rtol=0.05)
    assert not torch.equal(after.float(), before.float())


@pytest.mark.parametrize("arch", ARCHS)
def test_merge_lora_keeps_the_policy_and_removes_the_teacher(arch, tiny):
    x, cond = tiny.latents(), tiny.cond(arch)
    student = tiny.student(arch)
    tiny.randomize(student)
    trainable = {n: t.clone() for n, t in student.trainable_state_dict().items()}
    with torch.no_grad():
        teacher = student.teacher_velocity(x, SIGMA, cond)
        before = student.student_policy(x, SIGMA, cond).velocity(SIGMA * 0.5)
        student.merge_lora()
        after = student.student_policy(x, SIGMA, cond).velocity(SIGMA * 0.5)
        student.merge_lora()  # a second merge adds nothing
        again = student.student_policy(x, SIGMA, cond).velocity(SIGMA * 0.5)
    assert student.lora_merged
    assert not torch.allclose(before, teacher, atol=1e-3)  # the LoRA matters here
    assert torch.allclose(after, before, atol=1e-5) and torch.equal(again, after)
    assert all(torch.equal(t, trainable[n]) for n, t in student.trainable_state_dict().items())
    with pytest.raises(RuntimeError, match="merged"):
        student.teacher_velocity(x, SIGMA, cond)


@pytest.mark.parametrize("arch", ARCHS)
def test_gradient_checkpointing_gives_the_same_gradients(arch, tiny):
    x, cond = tiny.latents(), tiny.cond(arch)
    grads = []
    for checkpointing in (False, True):
        student = tiny.student(arch, gradient_checkpointing=checkpointing).train()
        tiny.randomize(student)
        loss = (
            student.student_policy(x, SIGMA, cond).mean_velocity(SIGMA, SIGMA * 0.5).square().mean()
        )
        teacher = student.teacher_velocity(x, SIGMA, cond)  # grad mode on: still no graph
        assert not teacher.requires_grad
        loss.backward()
        grads.append({n: p.grad for n, p in student.trainable_named_parameters()})
    assert student.transformer.gradient_checkpointing
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, msg=name)
    assert any(g.abs().sum() > 0 for n, g in grads[0].items() if "lora_B" in n)


def test_inputs_are_checked(tiny):
    student = tiny.student("flux")
    cond = tiny.cond("flux")
    with pytest.raises(ValueError, match=r"\(B, 4, H, W\)"):
        student.student_policy(torch.zeros(2, 3, 8, 8), SIGMA, cond)
    with pytest.raises(KeyError, match="pooled_prompt_embeds"):
        student.student_policy(tiny.latents(), SIGMA, {"prompt_embeds": cond["prompt_embeds"]})
    with pytest.raises(ValueError, match="already an ArcFlow student"):
        ArcFlowStudent(student.transformer, "flux")
