"""Growing a trained base transformer deeper without changing what it computes.

Every block of these transformers adds its branches to a residual stream,
``h <- h + gate * W_out f(h)``, so a block whose output projections ``W_out`` are zero is the
identity. :func:`deepen_transformer` follows each block of the architecture's growable stack
(FLUX: the single-stream blocks; Qwen-Image: its dual-stream blocks, the only stack it has) with
such a copy: the deepened model computes exactly the velocity it computed before, and training
goes on from there with more depth where it is short of capacity (depth up-scaling). A copy keeps
its original's other weights, so its attention and MLP produce useful features from the first
step; only its output projections start from nothing.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from diffusers import ModelMixin
from torch import nn

from arcflow.models.arch import get_arch


def deepened_config(arch: str, config: dict[str, Any], factor: int) -> dict[str, Any]:
    """Constructor arguments ``config`` with the growable stack ``factor`` times as deep."""
    _, count_key, _ = get_arch(arch).growable_stack
    return {**config, count_key: config[count_key] * factor}


def deepen_transformer(transformer: ModelMixin, arch: str, factor: int = 2) -> ModelMixin:
    """``transformer`` with each block of its growable stack followed by ``factor - 1`` identity
    copies (output projections zeroed); its config's layer count follows. Modified in place."""
    if factor < 1:
        raise ValueError(f"deepen factor must be a positive integer, got {factor}")
    adapter = get_arch(arch)
    adapter.check_transformer(transformer)
    stack_name, count_key, outputs = adapter.growable_stack
    blocks = getattr(transformer, stack_name)
    grown: list[nn.Module] = []
    for block in blocks:
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
