"""Whole tensors from FSDP-sharded ones and back, so checkpoints and EMA files never depend on
how a run was sharded.

Under ``ArcFlowFSDP`` a parameter is a ``DTensor`` whose local part is one rank's shard; without it
(single process, DDP) it is a plain tensor and these functions return it unchanged.
"""

from __future__ import annotations

import torch
from mmengine.dist import is_main_process
from torch.distributed.tensor import DTensor, distribute_tensor


def full_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor. Gathering a ``DTensor`` is a collective: every rank must call this, in the
    same order."""
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def gather_to_main(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies of the whole tensors on the main rank, ``{}`` on the others.

    Every rank must call it (the gathers are collectives). Tensors are gathered one at a time, so
    device memory holds a single whole tensor at once, and only the main rank keeps host copies.
    """
    main = is_main_process()
    gathered = {}
    for name, tensor in tensors.items():
        whole = full_tensor(tensor.detach())
        if main:
            gathered[name] = whole.contiguous().cpu()
    return gathered


def shard_like(whole: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A new tensor holding ``whole`` laid out as ``like``: sharded the same way when ``like`` is a
    ``DTensor`` (each rank keeps its own part of ``whole``, no communication), else whole; on
    ``like``'s device, in ``whole``'s dtype.

    Every rank must hold the same ``whole`` (as after all ranks read one checkpoint file).
    """
    whole = whole.detach().to(like.device)
    if isinstance(like, DTensor):
        # The local part may be a view of ``whole``: the clone lets ``whole`` be freed.
        whole = distribute_tensor(whole, like.device_mesh, like.placements, src_data_rank=None)
    return whole.clone()
