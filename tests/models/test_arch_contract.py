"""Every base of ``arcflow.models.arch`` fills the same contract: unique names, LoRA targets that
exist, and random conditioning shaped exactly as its prompt encoding gives it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from arcflow.models.arch import ARCHS, ArchAdapter, arch_for_published_class, get_arch
from arcflow.models.text_encoders import PromptEncoder

ROOT = Path(__file__).resolve().parents[2]
TINY_STACKS = {"flux": "checkpoints/tiny-flux", "qwen_image": "checkpoints/tiny-qwen"}


def test_names_and_published_classes_are_unique_and_resolve():
    assert len({a.published_class_name for a in ARCHS.values()}) == len(ARCHS)
    for name, adapter in ARCHS.items():
        assert adapter.name == name and get_arch(name) is adapter and get_arch(adapter) is adapter
        assert arch_for_published_class(adapter.published_class_name) is adapter
    with pytest.raises(ValueError, match=r"unknown architecture 'sd3'; known: \['flux'"):
        get_arch("sd3")


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_lora_targets_are_linear_layers_of_the_base(arch, tiny):
    adapter: ArchAdapter = ARCHS[arch]
    base = tiny.base(arch)
    modules = dict(base.named_modules())
    released = adapter.lora_targets(base)
    with_attention = adapter.lora_targets(base, attention=True)
    assert released and set(released) < set(with_attention)
    assert all(isinstance(modules[name], nn.Linear) for name in with_attention)
    # Never the network's own output projection or input embedding.
    assert "proj_out" not in with_attention and adapter.input_embedder not in with_attention


@pytest.mark.parametrize("arch", sorted(TINY_STACKS))
def test_random_conditioning_is_shaped_as_the_prompt_encoding(arch):
    """What speed checks feed the network (random embeddings) has the keys, trailing sizes and
    dtypes of what the base's stock pipeline encodes from text."""
    adapter = get_arch(arch)
    stack = ROOT / TINY_STACKS[arch]
    encoder = PromptEncoder(arch, str(stack), max_sequence_length=16)
    encoded = encoder(["a red circle at the top left", "a blue square"])
    config = SimpleNamespace(**adapter.transformer_cls.load_config(stack / "transformer"))
    negative = encoded.get("negative_prompt_embeds", torch.zeros(0, 0))
    random = adapter.random_cond(
        config,
        2,
        (encoded["prompt_embeds"].shape[1], negative.shape[1]),
        lambda *shape: torch.randn(shape),
        lambda tokens: torch.ones(2, tokens, dtype=torch.long),
    )
    assert sorted(random) == sorted(encoded)
    for key, value in encoded.items():
        assert random[key].shape == value.shape, key
        assert random[key].dtype.is_floating_point == value.dtype.is_floating_point, key
    assert adapter.true_cfg == ("negative_prompt_embeds" in encoded)
