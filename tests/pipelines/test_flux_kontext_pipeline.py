"""ArcFluxKontextPipeline on a tiny random FLUX stack: its teacher is the stock
FluxKontextPipeline (its scheduler at the static shift) from the same noise and source image, and
its student edits through the one sampling loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FluxKontextPipeline, FluxTransformer2DModel
from PIL import Image

from arcflow.flow.sampling import make_noise, sample_student
from arcflow.pipelines import ArcFluxKontextPipeline
from arcflow.released import RELEASED_SHIFT

from .conftest import tiny_adapter

PROMPTS = ["make the circle blue", "remove the square"]


@pytest.fixture(scope="module")
def stack(tiny_stacks, tmp_path_factory):
    folder = tiny_stacks.model("flux")
    transformer = FluxTransformer2DModel.from_pretrained(folder, subfolder="transformer")
    adapter = tiny_adapter(transformer, "flux_kontext", tmp_path_factory.mktemp("kontext"))
    pipe = ArcFluxKontextPipeline.from_pretrained(folder, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_arcflow_adapter(adapter)
    return folder, pipe


def source_image(height: int = 32, width: int = 48) -> Image.Image:
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def noise(pipe, height=32, width=48, seeds=(0, 1)):
    f = pipe.vae_scale_factor
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    return make_noise(len(seeds), 4, height // f, width // f, generators)


def test_teacher_is_the_stock_kontext_pipeline(stack):
    folder, pipe = stack
    stock = FluxKontextPipeline.from_pretrained(folder, local_files_only=True)
    stock.set_progress_bar_config(disable=True)
    # The stock pipeline with this project's step layout: the static shift, no dynamic one.
    stock.scheduler = FlowMatchEulerDiscreteScheduler(
        shift=RELEASED_SHIFT, use_dynamic_shifting=False
    )
    start = noise(pipe)
    ours = pipe(
        source_image(), PROMPTS, teacher_steps=3, latents=start, output_type="latent",
        max_sequence_length=16, guidance_scale=2.5,
    ).images  # fmt: skip
    packed = stock._pack_latents(start, *start.shape)
    theirs = stock(
        image=source_image(), prompt=PROMPTS, num_inference_steps=3, guidance_scale=2.5,
        latents=packed, output_type="latent", max_sequence_length=16, _auto_resize=False,
        height=32, width=48, max_area=32 * 48,
    ).images  # fmt: skip
    theirs = stock._unpack_latents(theirs, 32, 48, stock.vae_scale_factor)
    # Each transformer step is the stock one bit for bit (tests/models/test_flux_kontext.py); the
    # scheduler's float32 sigmas move the last bits of the Euler updates.
    torch.testing.assert_close(ours, theirs, rtol=0, atol=2e-6)
    assert not torch.allclose(ours, start, atol=1e-2)


def test_student_edit_is_the_sampling_loop_on_the_source_latents(stack):
    _, pipe = stack
    start = noise(pipe)
    image = source_image()
    latents = pipe(
        image, PROMPTS, latents=start, output_type="latent", max_sequence_length=16
    ).images
    cond = pipe.encode_cond(PROMPTS, 1, 16)
    source = pipe.encode_image(image)
    f = pipe.vae_scale_factor
    assert source.shape == (1, 4, 32 // f, 48 // f)  # the source image, one latent pixel per f
    cond["image_latents"] = source.expand(2, -1, -1, -1)
    reference = sample_student(pipe.student, start, cond, 2)
    assert torch.equal(latents, reference)
    # Another source image gives another edit; a size off the grid is rounded down.
    other = pipe(
        source_image(40, 50), PROMPTS, height=32, width=48, latents=start,
        output_type="latent", max_sequence_length=16,
    ).images  # fmt: skip
    assert pipe.encode_image(source_image(40, 50)).shape == (1, 4, 40 // f, 48 // f)
    assert not torch.allclose(other, latents)
    edited = pipe(source_image(), PROMPTS[0], max_sequence_length=16).images[0]
    assert edited.size == (48, 32)  # the source image's size by default
