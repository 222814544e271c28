"""ArcFluxPipeline / ArcQwenImagePipeline on tiny stacks: the pipeline is the one sampling loop."""

from __future__ import annotations

import pytest
import torch

from arcflow.flow.sampling import make_noise, sample_student, sample_teacher, student_sigmas
from arcflow.pipelines import ArcFluxPipeline, ArcQwenImagePipeline

PIPELINES = {"flux": ArcFluxPipeline, "qwen_image": ArcQwenImagePipeline}
PROMPTS = ["a red circle at the top left", "blue square"]
SIZE = 32


def load(tiny_stacks, arch: str):
    pipe = PIPELINES[arch].from_pretrained(tiny_stacks.model(arch), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_arcflow_adapter(tiny_stacks.adapter(arch))
    return pipe


def noise_for(pipe, seeds=(0, 1)) -> torch.Tensor:
    side = SIZE // pipe.vae_scale_factor
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    return make_noise(len(seeds), 4, side, side, generators)


@pytest.fixture(scope="module", params=["flux", "qwen_image"])
def pipe(request, tiny_stacks):
    return load(tiny_stacks, request.param)


def test_pipeline_equals_training_time_sampler(pipe):
    """Same seeds -> the latents sample_student gives on the same conditioning (validation and
    evaluation call it directly), and the image is their decoding."""
    generators = [torch.Generator().manual_seed(s) for s in (0, 1)]
    latents = pipe(
        PROMPTS, height=SIZE, width=SIZE, generator=generators, output_type="latent"
    ).images
    reference = sample_student(pipe.student, noise_for(pipe), pipe.encode_cond(PROMPTS), nfe=2)
    assert latents.shape == reference.shape
    assert (latents - reference).abs().max() <= 1e-5

    images = pipe(PROMPTS, height=SIZE, width=SIZE, latents=noise_for(pipe), output_type="pt")
    assert images.images.shape == (2, 3, SIZE, SIZE)
    pil = pipe(PROMPTS[0], height=SIZE, width=SIZE, generator=generators[0]).images[0]
    assert pil.size == (SIZE, SIZE)


@pytest.mark.parametrize("nfe", [1, 2, 4])
def test_nfe_steps_and_callbacks(pipe, nfe):
    seen = []

    def on_step_end(pipeline, step, timestep, tensors):
        seen.append((step, float(timestep), tuple(tensors["latents"].shape)))
        return {}

    latents = pipe(
        PROMPTS[0],
        num_inference_steps=nfe,
        height=SIZE,
        width=SIZE,
        latents=noise_for(pipe, (0,)),
        output_type="latent",
        callback_on_step_end=on_step_end,
    ).images
    assert torch.isfinite(latents).all()
    sigmas = student_sigmas(nfe, 1.0, 3.2)
    assert [s for s, _, _ in seen] == list(range(nfe))
    assert [t for _, t, _ in seen] == pytest.approx((sigmas[:-1] * 1000).tolist(), rel=1e-6)


def test_callback_replaces_latents_and_shift_is_static(pipe):
    kwargs = dict(height=SIZE, width=SIZE, output_type="latent")
    zeros = pipe(
        PROMPTS[0],
        latents=noise_for(pipe, (0,)),
        callback_on_step_end=lambda p, i, t, tensors: {"latents": tensors["latents"] * 0},
        **kwargs,
    ).images
    assert (zeros == 0).all()
    default = pipe(PROMPTS[0], latents=noise_for(pipe, (0,)), **kwargs).images
    # The scheduler's dynamic shift is never consulted; only the static shift matters.
    pipe.scheduler.register_to_config(use_dynamic_shifting=True, shift=1.0)
    same = pipe(PROMPTS[0], latents=noise_for(pipe, (0,)), shift=3.2, **kwargs).images
    other = pipe(PROMPTS[0], latents=noise_for(pipe, (0,)), shift=1.0, **kwargs).images
    assert torch.equal(default, same)
    assert not torch.allclose(default, other)


def test_teacher_from_same_noise(pipe):
    """teacher_steps samples the base model (adapters off) with sample_teacher."""
    qwen = isinstance(pipe, ArcQwenImagePipeline)
    latents = pipe(
        PROMPTS,
        height=SIZE,
        width=SIZE,
        latents=noise_for(pipe),
        output_type="latent",
        teacher_steps=3,
    ).images
    cond = pipe.encode_cond(PROMPTS, negative_prompt="") if qwen else pipe.encode_cond(PROMPTS)
    reference = sample_teacher(pipe.student, noise_for(pipe), cond, steps=3)
    assert (latents - reference).abs().max() <= 1e-5
    student = pipe(
        PROMPTS, height=SIZE, width=SIZE, latents=noise_for(pipe), output_type="latent"
    ).images
    assert not torch.allclose(latents, student)


def test_model_cpu_offload(tiny_stacks):
    """With accelerate's offload hooks (execution device = CPU here) the image is unchanged."""
    pipe = load(tiny_stacks, "flux")
    kwargs = dict(height=SIZE, width=SIZE, latents=noise_for(pipe), output_type="pt")
    plain = pipe(PROMPTS, **kwargs).images
    pipe.enable_model_cpu_offload(device="cpu")
    assert hasattr(pipe.transformer, "_hf_hook")
    offloaded = pipe(PROMPTS, **kwargs).images
    assert torch.equal(plain, offloaded)


def test_errors_are_clear(tiny_stacks):
    pipe = ArcFluxPipeline.from_pretrained(tiny_stacks.model("flux"), local_files_only=True)
    with pytest.raises(RuntimeError, match="load_arcflow_adapter"):
        pipe("x", height=SIZE, width=SIZE)
    pipe.load_arcflow_adapter(tiny_stacks.adapter("flux"))
    with pytest.raises(ValueError, match="already loaded"):
        pipe.load_arcflow_adapter(tiny_stacks.adapter("flux"))
    with pytest.raises(ValueError, match="multiples of 4"):
        pipe("x", height=30, width=SIZE)


def test_a_call_takes_the_model_folders_sampling_defaults():
    """The Python API samples a tiny stack as the command line does: what the call leaves out
    comes from the folder's sampling_defaults.json (tiny FLUX: 64x64, 32 T5 tokens, guidance
    7.0, not the released 3.5)."""
    import json
    from pathlib import Path

    stack = Path(__file__).resolve().parents[2] / "checkpoints"
    pipe = ArcFluxPipeline.from_pretrained(stack / "tiny-flux", local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_arcflow_adapter(stack / "tiny-flux-arcflow")
    defaults = json.loads((stack / "tiny-flux" / "sampling_defaults.json").read_text())
    assert pipe.sampling_defaults == defaults and defaults["guidance_scale"] == 7.0

    def image(**settings) -> torch.Tensor:
        generator = torch.Generator().manual_seed(0)
        return pipe(PROMPTS[0], generator=generator, output_type="pt", **settings).images

    plain = image()
    assert plain.shape == (1, 3, defaults["height"], defaults["width"])
    assert torch.equal(plain, image(**defaults))
    assert not torch.equal(plain, image(**dict(defaults, guidance_scale=3.5)))
