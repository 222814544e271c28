"""Growing a trained base transformer deeper without changing what it computes.

Every block of these transformers adds its branches to a residual stream,
``h <- h + gate * W_out f(h)``, so a block whose output projections ``W_out`` are zero is the
identity. :func:`deepen_transformer` follows each block of a growable stack with such a copy: the
deepened model computes exactly the velocity it computed before, and training goes on from there
with more depth where it is short of capacity (depth up-scaling). A copy keeps its original's
other weights, so its attention and MLP produce useful features from the first step; only its
output projections start from nothing.

Growable stacks (``ArchAdapter.growable_stacks``): FLUX's single-stream blocks (the default) and
its double-stream blocks, where text and image tokens keep separate weights; Qwen-Image's
dual-stream blocks, the only stack it has. ``deepen`` is a factor for the default stack or a
mapping ``{stack name: factor}``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from diffusers import ModelMixin
from torch import nn

from arcflow.models.arch import get_arch

Growth = int | Mapping[str, int]


def growth_factors(arch: str, deepen: Growth) -> dict[str, int]:
    """``deepen`` as ``{stack name: factor}``, checked against the arch's growable stacks."""
    stacks = get_arch(arch).growable_stacks
    if deepen == 1:
        return {}  # nothing grows: every base takes it, growable stacks or none
    if isinstance(deepen, int) and not stacks:
        raise ValueError(f"{arch!r} has no growable stacks: transformer.deepen must be 1")
    factors = {next(iter(stacks)): deepen} if isinstance(deepen, int) else dict(deepen)
    unknown = sorted(set(factors) - set(stacks))
    if unknown:
        raise ValueError(
            f"cannot deepen {unknown} of {arch!r}: its growable stacks are {list(stacks)}"
        )
    for stack, factor in factors.items():
        if not isinstance(factor, int) or isinstance(factor, bool) or factor < 1:
            raise ValueError(f"deepen factor of {stack} must be a positive integer, got {factor!r}")
    return factors


def deepened_config(arch: str, config: dict[str, Any], deepen: Growth) -> dict[str, Any]:
    """Constructor arguments ``config`` with each grown stack ``factor`` times as deep."""
    stacks = get_arch(arch).growable_stacks
    grown = dict(config)
    for stack, factor in growth_factors(arch, deepen).items():
        count_key = stacks[stack][0]
        grown[count_key] = config[count_key] * factor
    return grown


def deepen_transformer(transformer: ModelMixin, arch: str, deepen: Growth = 2) -> ModelMixin:
    """``transformer`` with each block of the grown stacks followed by ``factor - 1`` identity
    copies (output projections zeroed); its config's layer counts follow. Modified in place."""
    adapter = get_arch(arch)
    adapter.check_transformer(transformer)
    for stack_name, factor in growth_factors(arch, deepen).items():
        count_key, outputs = adapter.growable_stacks[stack_name]
        grown: list[nn.Module] = []
        for block in getattr(transformer, stack_name):
            grown.append(block)
            for _ in range(factor - 1):
                twin = copy.deepcopy(block)
                for name in outputs:
                    projection = twin.get_submodule(name)
                    with torch.no_grad():
                        projection.weight.zero_()
                        if projection.bias is not None:
                            projection.bias.zero_()
                grown.append(twin)
        setattr(transformer, stack_name, nn.ModuleList(grown))
        transformer.register_to_config(**{count_key: len(grown)})
    return transformer
