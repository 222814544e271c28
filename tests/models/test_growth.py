"""Depth growth: a deepened base computes the same velocity, and its new blocks are live."""

from __future__ import annotations

import pytest
import torch

import arcflow.tinyworld.architectures  # noqa: F401  (registers the named "toy" size)
from arcflow.models import build_transformer, deepen_transformer, get_arch
from arcflow.models.builder import base_architecture, build_base_from_cfg


def _velocity(tiny, arch: str, transformer) -> torch.Tensor:
    sigma = torch.tensor([0.9, 0.4])
    scale = 3.0 if arch == "flux" else 4.0  # embedded guidance / true CFG
    return get_arch(arch).teacher_velocity(
        transformer, tiny.latents(), sigma, tiny.cond(arch), scale
    )


# Every growable stack of each architecture (FLUX: single- and double-stream blocks).
STACKS = [
    (arch, stack) for arch in ("flux", "qwen_image") for stack in get_arch(arch).growable_stacks
]


@pytest.mark.parametrize(("arch", "stack_name"), STACKS)
def test_deepened_model_computes_the_same_velocity(tiny, arch, stack_name):
    base = tiny.base(arch)
    count_key, _ = get_arch(arch).growable_stacks[stack_name]
    depth = len(getattr(base, stack_name))
    with torch.no_grad():
        before = _velocity(tiny, arch, base)
        deep = deepen_transformer(base, arch, {stack_name: 3})
        after = _velocity(tiny, arch, deep)
    assert len(getattr(deep, stack_name)) == 3 * depth
    assert deep.config[count_key] == 3 * depth
    torch.testing.assert_close(after, before, rtol=0, atol=1e-6)

    # The copies sit in the forward path: moving one of them moves the velocity.
    twin = getattr(deep, stack_name)[1]
    with torch.no_grad():
        for param in twin.parameters():
            param.add_(0.05 * torch.randn_like(param))
        moved = _velocity(tiny, arch, deep)
    assert (moved - before).abs().max() > 1e-3


@pytest.mark.parametrize(("arch", "stack_name"), STACKS)
def test_new_blocks_learn_from_the_first_step(tiny, arch, stack_name):
    """The zeroed output projections get a gradient at once (their inputs are not zero)."""
    deep = deepen_transformer(tiny.base(arch), arch, {stack_name: 2})
    _, outputs = get_arch(arch).growable_stacks[stack_name]
    _velocity(tiny, arch, deep).square().mean().backward()
    twin = getattr(deep, stack_name)[1]
    for name in outputs:
        grad = twin.get_submodule(name).weight.grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_deepened_base_saves_and_reloads(tiny, tmp_path):
    deep = deepen_transformer(tiny.base("flux"), "flux")
    deep.save_pretrained(tmp_path / "transformer")
    reloaded = build_base_from_cfg(
        "flux",
        "cpu",
        from_pretrained=str(tmp_path),
        from_config={**tiny.configs["flux"], "num_single_layers": 2},
    )
    with torch.no_grad():
        torch.testing.assert_close(
            _velocity(tiny, "flux", reloaded), _velocity(tiny, "flux", deep), rtol=0, atol=0
        )


def test_config_entry_deepens_the_loaded_base(tiny, tmp_path):
    tiny.base("qwen_image").save_pretrained(tmp_path / "transformer")
    grown = {**tiny.configs["qwen_image"], "num_layers": 4}
    built = build_base_from_cfg(
        "qwen_image", "cpu", from_pretrained=str(tmp_path), from_config=grown, deepen=2
    )
    assert len(built.transformer_blocks) == 4
    on_meta = build_base_from_cfg("qwen_image", "meta", from_pretrained=str(tmp_path), deepen=2)
    assert on_meta.config.num_layers == 4
    # from_config describes the grown model: the loaded depth is a named mismatch.
    with pytest.raises(ValueError, match="num_layers=4, the config expects 2"):
        build_base_from_cfg(
            "qwen_image",
            "cpu",
            from_pretrained=str(tmp_path),
            from_config=tiny.configs["qwen_image"],
            deepen=2,
        )


def test_config_entry_grows_both_flux_stacks(tiny, tmp_path):
    """An integer grows the default (single-stream) stack; a mapping names the stacks."""
    tiny.base("flux").save_pretrained(tmp_path / "transformer")
    built = build_base_from_cfg(
        "flux",
        "cpu",
        from_pretrained=str(tmp_path),
        deepen=dict(transformer_blocks=2, single_transformer_blocks=3),
    )
    assert (built.config.num_layers, built.config.num_single_layers) == (2, 3)
    assert (len(built.transformer_blocks), len(built.single_transformer_blocks)) == (2, 3)
    with torch.no_grad():
        torch.testing.assert_close(
            _velocity(tiny, "flux", built),
            _velocity(tiny, "flux", tiny.base("flux")),
            rtol=0,
            atol=1e-6,
        )
    on_meta = build_base_from_cfg("flux", "meta", from_pretrained=str(tmp_path), deepen=2)
    assert (on_meta.config.num_layers, on_meta.config.num_single_layers) == (1, 2)


def test_deepen_needs_trained_weights(tiny):
    with pytest.raises(ValueError, match="needs transformer.from_pretrained"):
        build_base_from_cfg("flux", "cpu", from_config=tiny.configs["flux"], deepen=2)
    with pytest.raises(ValueError, match="positive integer"):
        deepen_transformer(build_transformer("flux", tiny.configs["flux"], "cpu"), "flux", 0)
    with pytest.raises(ValueError, match=r"cannot deepen \['single_blocks'\].*growable stacks"):
        build_base_from_cfg("flux", "meta", from_config="full", deepen=dict(single_blocks=2))


def test_a_named_architecture_describes_the_model_before_growth(tiny, tmp_path):
    """``from_config="toy"`` with ``deepen=2``: the toy size grown, checked against the loaded
    and grown base; without ``deepen`` the grown checkpoint is a named mismatch."""
    tiny.base("qwen_image").save_pretrained(tmp_path / "transformer")
    source = dict(from_pretrained=str(tmp_path), from_config="toy")
    built = build_base_from_cfg("qwen_image", "cpu", **source, deepen=2)
    assert built.config.num_layers == 2 * tiny.configs["qwen_image"]["num_layers"]
    built.save_pretrained(tmp_path / "grown" / "transformer")
    with pytest.raises(ValueError, match="num_layers=4, the config expects 2"):
        build_base_from_cfg(
            "qwen_image", "cpu", from_pretrained=str(tmp_path / "grown"), from_config="toy"
        )
    # what a run with this entry trained, without reading its weights: a model that takes its state
    architecture = base_architecture(
        "qwen_image", from_pretrained=str(tmp_path), from_config="toy", deepen=2
    )
    assert architecture["num_layers"] == 4
    rebuilt = build_transformer("qwen_image", architecture, device="cpu")
    rebuilt.load_state_dict(built.state_dict())
