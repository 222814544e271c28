"""Distributed model wrappers whose train step keeps the distiller's per-segment backward.

They live in mmengine's root registry: the Runner looks wrappers up with ``MODEL_WRAPPERS.get``,
which does not search scoped child registries.
"""

from __future__ import annotations

import torch
from diffusers.models.transformers.transformer_flux import (
    FluxSingleTransformerBlock,
    FluxTransformerBlock,
)
from diffusers.models.transformers.transformer_qwenimage import QwenImageTransformerBlock
from mmengine.model import MMDistributedDataParallel
from mmengine.model.wrappers import MMFullyShardedDataParallel
from mmengine.registry import FUNCTIONS, MODEL_WRAPPERS
from torch import nn

TRANSFORMER_BLOCKS = (FluxTransformerBlock, FluxSingleTransformerBlock, QwenImageTransformerBlock)


@FUNCTIONS.register_module(name="arcflow_transformer_blocks")
def transformer_block_wrap_policy(module: nn.Module, recurse: bool, nonwrapped_numel: int) -> bool:
    """FSDP auto-wrap policy: one FSDP unit per FLUX / Qwen-Image transformer block, so only one
    block's full weights are gathered at a time."""
    return True if recurse else isinstance(module, TRANSFORMER_BLOCKS)


def _delegate_train_step(wrapper, data, optim_wrapper):
    """The project's models take ``wrapper=`` and route their forwards through it."""
    return wrapper.module.train_step(data, optim_wrapper, wrapper=wrapper)


@MODEL_WRAPPERS.register_module()
class ArcFlowDDP(MMDistributedDataParallel):
    """DDP that hands the train step to the model (forwards still run through DDP).

    On a machine without CUDA it drops ``device_ids`` (mmengine always passes the local rank),
    so the same config runs under gloo on CPU and NCCL on GPUs.
    """

    def __init__(self, module, device_ids=None, **kwargs):
        if not torch.cuda.is_available():
            device_ids = None
        kwargs.setdefault("broadcast_buffers", False)
        super().__init__(module=module, device_ids=device_ids, **kwargs)

    def train_step(self, data, optim_wrapper):
        return _delegate_train_step(self, data, optim_wrapper)


@MODEL_WRAPPERS.register_module()
class ArcFlowFSDP(MMFullyShardedDataParallel):
    """FSDP (frozen base and trainable tensors sharded together, ``use_orig_params=True`` so
    that LoRA and heads keep their names) that hands the train step to the model."""

    def __init__(self, module, **kwargs):
        if not torch.cuda.is_available():
            raise RuntimeError(
                "FSDP needs CUDA GPUs; on CPU train with DDP (the plain config under torchrun)"
            )
        kwargs.setdefault("use_orig_params", True)
        super().__init__(module=module, **kwargs)

    def train_step(self, data, optim_wrapper):
        return _delegate_train_step(self, data, optim_wrapper)
