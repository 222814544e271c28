"""Distributed model wrappers whose train step keeps the distiller's per-segment backward.

They live in mmengine's root registry: the Runner looks wrappers up with ``MODEL_WRAPPERS.get``,
which does not search scoped child registries.

Both offer ``no_sync()``: within it backward passes accumulate local gradients without reducing
them, and the first backward after it reduces everything accumulated. The distiller (and
mmengine's ``optim_context``) rely on that one interface.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist
from diffusers import ModelMixin
from diffusers.models.transformers.transformer_flux import (
    FluxSingleTransformerBlock,
    FluxTransformerBlock,
)
from diffusers.models.transformers.transformer_qwenimage import QwenImageTransformerBlock
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

from arcflow.models.student import resolve_dtype

TRANSFORMER_BLOCKS = (FluxTransformerBlock, FluxSingleTransformerBlock, QwenImageTransformerBlock)


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


def sharded_transformers(model: nn.Module) -> list[ModelMixin]:
    """The diffusers models inside ``model`` (itself included) that hold transformer blocks."""
    return [
        module
        for module in model.modules()
        if isinstance(module, ModelMixin)
        and any(isinstance(block, TRANSFORMER_BLOCKS) for block in module.modules())
    ]


@MODEL_WRAPPERS.register_module()
class ArcFlowFSDP(nn.Module):
    """FSDP2 (``torch.distributed.fsdp.fully_shard``) over all ranks, on CUDA (NCCL) or CPU (gloo).

    Every FLUX / Qwen-Image transformer block is one shard unit (only one block's whole weights are
    gathered at a time), and each diffusers transformer holding them is the root unit of the rest
    of its weights (embeddings, final norm, heads). The frozen base and the trainable LoRA and heads
    are sharded together: FSDP2 shards each parameter along dim 0, whatever its ``requires_grad``.
    Parameters keep their names, so checkpoints match unsharded runs (see ``engine.sharding``).

    The roots are the transformers, not the wrapped model: every forward of the project (student,
    teacher, validation sampling) calls a transformer, whereas the model's own methods (prompt
    encoding, conditioning) also run outside any forward a hook on the model would see. Weights
    outside the transformers (a frozen prompt encoder) are replicated; a trainable one is refused,
    as nothing would reduce its gradients.

    Unlike DDP, the wrapper does not replace the model: ``self.module`` is the model itself, with
    its transformers sharded in place, and ``forward`` calls it. Train with ``ArcFlowRunner`` (as
    tools/train.py does): mmengine's Runner would broadcast the shards after ``init_weights``.

    Each unit frees its gathered weights after every forward (also the roots, unlike FSDP2's
    default): the registered parameters are then always the shards, so code that reads or writes
    them between iterations (EMA, validation with EMA weights, checkpoints) sees the shards.

    Args:
        module: the model, e.g. an ``ArcFlowDistiller``.
        param_dtype: dtype of the gathered weights, i.e. of forward and backward compute (e.g.
            ``"bfloat16"``); None keeps each parameter's own dtype.
        reduce_dtype: dtype in which gradients are reduced; None: the compute dtype.
    """

    def __init__(
        self,
        module: nn.Module,
        param_dtype: torch.dtype | str | None = None,
        reduce_dtype: torch.dtype | str | None = None,
    ) -> None:
        super().__init__()
        if not dist.is_initialized():
            raise RuntimeError(
                "ArcFlowFSDP needs a process group: launch with torchrun ... --launcher pytorch"
            )
        roots = sharded_transformers(module)
        if not roots:
            raise ValueError(
                f"{type(module).__name__} holds no FLUX / Qwen-Image transformer blocks to shard: "
                "train it with DDP (configs/_base_/distributed/ddp.py)"
            )
        sharded = {id(p) for root in roots for p in root.parameters()}
        replicated = [
            n for n, p in module.named_parameters() if p.requires_grad and id(p) not in sharded
        ]
        if replicated:
            raise ValueError(
                f"trainable parameters outside the sharded transformers: {replicated[:5]}; "
                "their gradients would not be reduced under ArcFlowFSDP"
            )
        if torch.cuda.is_available():
            device = torch.device("cuda", torch.cuda.current_device())
            module.to(device)
        else:
            device = torch.device("cpu")
        # Every rank starts from rank 0's weights, as under DDP; the shards are cut from them.
        with torch.no_grad():
            for tensor in [*module.parameters(), *module.buffers()]:
                dist.broadcast(tensor, src=0)
        mesh = init_device_mesh(device.type, (dist.get_world_size(),))
        options = dict(
            mesh=mesh,
            reshard_after_forward=True,
            mp_policy=MixedPrecisionPolicy(
                param_dtype=resolve_dtype(param_dtype), reduce_dtype=resolve_dtype(reduce_dtype)
            ),
        )
        for root in roots:
            for block in root.modules():
                if isinstance(block, TRANSFORMER_BLOCKS):
                    fully_shard(block, **options)
            fully_shard(root, **options)
        self.module = module
        self._roots: list[FSDPModule] = roots

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)

    @contextmanager
    def no_sync(self) -> Iterator[None]:
        """Backward passes inside accumulate unreduced gradients (as ``DDP.no_sync``)."""
        for root in self._roots:
            root.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            for root in self._roots:
                root.set_requires_gradient_sync(True)

    def train_step(self, data: dict, optim_wrapper) -> dict[str, torch.Tensor]:
        return _delegate_train_step(self, data, optim_wrapper)

    def val_step(self, data: dict) -> list:
        return self.module.val_step(data)

    def test_step(self, data: dict) -> list:
        return self.module.test_step(data)
