"""Float8 storage of the base (diffusers' layerwise casting) under the ArcFlow student."""

from __future__ import annotations

import pytest
import torch

from arcflow.pipelines import ArcFluxPipeline, ArcQwenImagePipeline

PIPELINES = {"flux": ArcFluxPipeline, "qwen_image": ArcQwenImagePipeline}
SIZE = 32


def image(pipe) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return pipe(
        "a red circle", height=SIZE, width=SIZE, generator=generator, output_type="pt"
    ).images


def load(tiny_stacks, arch: str, fp8: str | None):
    """The float32 pipeline with its adapter; ``fp8``: float8 storage enabled "before" or
    "after" the adapter is loaded (float32 compute)."""
    pipe = PIPELINES[arch].from_pretrained(tiny_stacks.model(arch), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)

    def float8_storage() -> None:
        pipe.transformer.enable_layerwise_casting(
            storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.float32
        )

    if fp8 == "before":
        float8_storage()
    pipe.load_arcflow_adapter(tiny_stacks.adapter(arch))
    if fp8 == "after":
        float8_storage()
    return pipe


@pytest.mark.parametrize("arch", ["flux", "qwen_image"])
@pytest.mark.parametrize("order", ["before", "after"])
def test_float8_storage_of_the_base_samples_the_student(tiny_stacks, arch, order):
    reference = image(load(tiny_stacks, arch, None))
    pipe = load(tiny_stacks, arch, order)
    stored = {n: p.dtype for n, p in pipe.transformer.named_parameters()}
    adapted = next(iter(pipe.student.lora_layers()))
    for base in ("transformer_blocks.0.attn.to_q.weight", f"{adapted}.base_layer.weight"):
        assert stored[base] == torch.float8_e4m3fn, base
    # The LoRA, the heads and the forked modulation stay in the compute dtype.
    for name, param in pipe.student.trainable_named_parameters():
        assert param.dtype == torch.float32, name
    fp8 = image(pipe)
    psnr = 10 * torch.log10(1 / (fp8 - reference).square().mean())
    assert 0 < (fp8 - reference).abs().max() and psnr > 35, float(psnr)
