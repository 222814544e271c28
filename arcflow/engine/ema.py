"""EMA of the trainable tensors (docs/method.md, Optimisation)."""

from __future__ import annotations

import torch
from mmengine.hooks import Hook
from torch import nn

from arcflow.engine.sharding import gather_to_main, shard_like
from arcflow.registry import HOOKS


def ema_beta(step: int, start_iter: int, gamma: float) -> float:
    """Decay after ``step`` optimiser updates: 0 (a plain copy) up to ``start_iter``, then
    ``beta = (1 - 1/t)^(gamma + 1)`` with ``t = step - start_iter``."""
    if step <= start_iter:
        return 0.0
    return (1.0 - 1.0 / (step - start_iter)) ** (gamma + 1)


def trainable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    model = getattr(model, "module", model)
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


@HOOKS.register_module()
class ArcFlowEMAHook(Hook):
    """Keeps a float32 EMA of the trainable tensors only (never of the frozen base).

    Under FSDP each EMA tensor is sharded as its parameter (a ``DTensor``: the update is local to
    each rank's shard); ``state_dict`` gathers whole tensors for checkpoints.

    Args:
        gamma: exponent of the schedule ``beta = (1 - 1/t)^(gamma + 1)``.
        start_iter: updates before this are plain copies.
    """

    priority = "ABOVE_NORMAL"  # after the optimiser step, before checkpoints are written

    def __init__(self, gamma: float = 7.0, start_iter: int = 100) -> None:
        self.gamma = gamma
        self.start_iter = start_iter
        self.ema: dict[str, torch.Tensor] = {}

    def _init(self, model: nn.Module) -> None:
        self.ema = {n: p.detach().float().clone() for n, p in trainable_parameters(model).items()}

    def before_train(self, runner) -> None:
        if not self.ema:
            self._init(runner.model)

    @torch.no_grad()
    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        beta = ema_beta(runner.iter + 1, self.start_iter, self.gamma)
        for name, param in trainable_parameters(runner.model).items():
            self.ema[name].lerp_(param.detach().float(), 1.0 - beta)
        runner.message_hub.update_scalar("train/ema_beta", beta)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Whole float32 CPU tensors on the main rank, ``{}`` on the others; under FSDP every rank
        must call it (the shards are gathered)."""
        return gather_to_main(self.ema)

    def load_state_dict(
        self, state: dict[str, torch.Tensor], params: dict[str, torch.Tensor]
    ) -> None:
        """Load whole tensors (the same on every rank), each laid out as ``params[name]``."""
        self.ema = {name: shard_like(v.float(), params[name]) for name, v in state.items()}
