"""Style LoRAs on top of the ArcFlow student: the pipeline keeps its own LoRA active."""

from __future__ import annotations

import pytest
import torch

from arcflow.pipelines import ArcFluxPipeline, ArcQwenImagePipeline

PIPELINES = {"flux": ArcFluxPipeline, "qwen_image": ArcQwenImagePipeline}
SIZE = 32


def sample(pipe) -> torch.Tensor:
    generators = [torch.Generator().manual_seed(0)]
    return pipe(
        "a red circle", height=SIZE, width=SIZE, generator=generators, output_type="latent"
    ).images


@pytest.fixture(scope="module", params=["flux", "qwen_image"])
def stack(request, tiny_stacks, tmp_path_factory):
    """(pipeline with the ArcFlow adapter, its image, zero LoRA folder, non-zero LoRA folder)."""
    arch = request.param
    root = tmp_path_factory.mktemp(f"style_{arch}")
    pipe = PIPELINES[arch].from_pretrained(tiny_stacks.model(arch), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_arcflow_adapter(tiny_stacks.adapter(arch))
    zero = tiny_stacks.style_lora(arch, root / "zero", 0.0)
    style = tiny_stacks.style_lora(arch, root / "style", 0.5)
    return pipe, sample(pipe), zero, style


def test_zero_style_lora_leaves_the_image_unchanged(stack):
    pipe, reference, zero, _ = stack
    pipe.load_lora_weights(zero, adapter_name="zero")
    try:
        assert set(pipe.get_active_adapters()) == {"arcflow", "zero"}
        assert pipe.lora_weights == {"zero": 1.0}
        torch.testing.assert_close(sample(pipe), reference, rtol=0, atol=1e-6)
    finally:
        pipe.delete_adapters("zero")


def test_style_lora_changes_the_image_and_the_arcflow_lora_stays_on(stack):
    pipe, reference, _, style = stack
    pipe.load_lora_weights(style, adapter_name="style", weight=0.8)
    try:
        assert set(pipe.get_active_adapters()) == {"arcflow", "style"}
        styled = sample(pipe)
        assert (styled - reference).abs().max() > 1e-3
        # Weight 0 for the style LoRA: the ArcFlow LoRA alone, as before the style was loaded.
        pipe.set_adapters(["style"], [0.0])
        torch.testing.assert_close(sample(pipe), reference, rtol=0, atol=1e-6)
        # Naming only the style LoRA keeps the ArcFlow LoRA on; dropping it must be asked for.
        pipe.set_adapters("style", 0.8)
        torch.testing.assert_close(sample(pipe), styled, rtol=0, atol=1e-6)
        pipe.set_adapters("style", 0.8, keep_arcflow=False)
        assert pipe.get_active_adapters() == ["style"]
        assert (sample(pipe) - styled).abs().max() > 1e-3
    finally:
        pipe.set_adapters([])
        pipe.delete_adapters("style")
    torch.testing.assert_close(sample(pipe), reference, rtol=0, atol=1e-6)


def test_the_arcflow_lora_is_not_removed_with_the_others(stack):
    pipe, reference, _, style = stack
    pipe.load_lora_weights(style, adapter_name="style")
    with pytest.raises(ValueError, match="ArcFlow student's own LoRA"):
        pipe.delete_adapters(["style", "arcflow"])
    pipe.unload_lora_weights()
    assert pipe.get_list_adapters()["transformer"] == ["arcflow"]
    assert pipe.lora_weights == {}
    torch.testing.assert_close(sample(pipe), reference, rtol=0, atol=1e-6)
