"""Distributed model wrappers whose train step keeps the distiller's per-segment backward."""

from __future__ import annotations

import torch
from mmengine.model import MMDistributedDataParallel
from mmengine.model.wrappers import MMFullyShardedDataParallel

from arcflow.registry import MODEL_WRAPPERS


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
        kwargs.setdefault("use_orig_params", True)
        super().__init__(module=module, **kwargs)

    def train_step(self, data, optim_wrapper):
        return _delegate_train_step(self, data, optim_wrapper)
