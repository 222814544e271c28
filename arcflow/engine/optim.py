"""Optimiser construction and stepping for distillation (docs/method.md, Optimisation)."""

from __future__ import annotations

import importlib.util
import math

import torch
from mmengine.logging import MessageHub, print_log
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIMIZERS
from torch import nn

from arcflow.registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class ArcFlowOptimWrapper(OptimWrapper):
    """Global grad-norm clipping from a given iteration on; a non-finite norm skips the step.

    Before ``clip_grad_from_iter`` the norm is measured (and logged) but not clipped. A step
    whose norm is inf or NaN is dropped and the gradients are cleared, so one bad batch cannot
    poison the weights; ``train/skipped_steps`` counts them. Under FSDP the gradients are shards
    (``DTensor``) and ``clip_grad_norm_`` reduces their norms over the ranks: the norm, the clip
    and the skip are global, the same on every rank.

    Args:
        clip_grad: ``dict(max_norm=...)`` as for ``OptimWrapper``; only norm clipping is offered.
        clip_grad_from_iter: first iteration at which the norm is clipped.
    """

    def __init__(
        self, optimizer, clip_grad: dict | None = None, clip_grad_from_iter: int = 0, **kw
    ):
        clip = dict(clip_grad or {})
        if clip.pop("type", "norm") != "norm":
            raise ValueError("ArcFlowOptimWrapper clips by global norm only: clip_grad.type='norm'")
        self.max_norm = float(clip.pop("max_norm", math.inf))
        if clip:
            raise ValueError(f"unknown clip_grad keys {sorted(clip)}: only max_norm is accepted")
        super().__init__(optimizer, **kw)
        self.clip_grad_from_iter = clip_grad_from_iter
        self.skipped_steps = 0

    def _trainable(self) -> list[torch.Tensor]:
        return [
            p
            for group in self.optimizer.param_groups
            for p in group["params"]
            if p.grad is not None
        ]

    def get_lr(self) -> dict[str, list[float]]:
        """mmengine's ``lr`` and ``base_lr``, the latter read from the optimiser's groups.

        mmengine tracks the base lr (multiplier 1) in a pseudo group beside the optimiser's, which
        the project's checkpoints do not hold: after a resume it would restart from the config's lr
        (a logged 1e-7-scale value against the 1e-4 in use). Each group records its ``lr_mult``
        (:class:`ArcFlowOptimWrapperConstructor`), so ``lr / lr_mult`` is the base lr whatever
        was resumed.
        """
        lrs = super().get_lr()
        if "base_lr" in lrs:
            group = self.optimizer.param_groups[0]
            lrs["base_lr"] = [group["lr"] / group.get("lr_mult", 1.0)]
        return lrs

    def step(self, **kwargs) -> None:
        params = self._trainable()
        if not params:
            return
        iteration = MessageHub.get_current_instance().get_info("iter", 0)
        max_norm = self.max_norm if iteration >= self.clip_grad_from_iter else math.inf
        norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        self.message_hub.update_scalar("train/grad_norm", norm)
        if not math.isfinite(norm):
            self.skipped_steps += 1
            self.message_hub.update_scalar("train/skipped_steps", self.skipped_steps)
            print_log(f"non-finite grad norm ({norm}) at iteration {iteration}: step skipped")
            self.optimizer.zero_grad(set_to_none=True)
            return
        self.optimizer.step(**kwargs)


# Devices on which ``prefer_8bit`` uses bitsandbytes. Its CPU backend also runs 8-bit AdamW
# (tests/engine/test_optim_ema.py), but CPU runs here keep 32-bit AdamW: their tests compare
# resumed and sharded runs with exact float32 optimiser states.
EIGHT_BIT_DEVICES = {"cuda"}


def bitsandbytes_adamw():
    """bitsandbytes' ``AdamW8bit`` class, or None when bitsandbytes is not installed."""
    if importlib.util.find_spec("bitsandbytes") is None:
        return None
    import bitsandbytes

    return bitsandbytes.optim.AdamW8bit


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class ArcFlowOptimWrapperConstructor:
    """Builds the optimiser over the trainable parameters only, with per-module lr multipliers.

    ``paramwise_cfg``:
        ``lr_mult``: ``{substring: factor}``; a parameter whose name contains the substring gets
        ``lr * factor`` (the released runs use ``{"log_rates": 0.1}``).
        ``prefer_8bit``: with ``AdamW`` on CUDA and bitsandbytes installed, use its 8-bit AdamW
        (moments stored in 8 bits: 2 bytes per trainable parameter instead of 8).
    Frozen parameters never reach the optimiser, so its state holds trainable tensors only.
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict | None = None) -> None:
        self.optim_wrapper_cfg = dict(optim_wrapper_cfg)
        paramwise = dict(paramwise_cfg or {})
        self.lr_mult = dict(paramwise.pop("lr_mult", {}))
        self.prefer_8bit = bool(paramwise.pop("prefer_8bit", False))
        if paramwise:
            raise ValueError(
                f"unknown paramwise_cfg keys {sorted(paramwise)}: accepted are lr_mult, prefer_8bit"
            )

    def __call__(self, model: nn.Module) -> OptimWrapper:
        model = getattr(model, "module", model)
        wrapper_cfg = dict(self.optim_wrapper_cfg)
        optimizer_cfg = dict(wrapper_cfg.pop("optimizer"))
        wrapper_cfg.setdefault("type", "ArcFlowOptimWrapper")
        base_lr = optimizer_cfg["lr"]
        groups: dict[float, list[nn.Parameter]] = {}
        matched = dict.fromkeys(self.lr_mult, False)
        for name, param in model.named_parameters():
            if not param.requires_grad:
                continue
            mult = 1.0
            for key, factor in self.lr_mult.items():
                if key in name:
                    mult, matched[key] = factor, True
            groups.setdefault(mult, []).append(param)
        if not groups:
            raise ValueError("the model has no trainable parameter")
        unmatched = [k for k, hit in matched.items() if not hit]
        if unmatched:
            raise ValueError(f"lr_mult keys {unmatched} match no trainable parameter name")
        optimizer_cfg["params"] = [
            dict(params=params, lr=base_lr * mult, lr_mult=mult) for mult, params in groups.items()
        ]
        optimizer_type = optimizer_cfg.pop("type")
        eight_bit = bitsandbytes_adamw() if self.prefer_8bit and optimizer_type == "AdamW" else None
        devices = {p.device.type for params in groups.values() for p in params}
        if eight_bit is not None and devices <= EIGHT_BIT_DEVICES:
            optimizer = eight_bit(**optimizer_cfg)
        else:
            optimizer = OPTIMIZERS.build(dict(type=optimizer_type, **optimizer_cfg))
        return OPTIM_WRAPPERS.build(wrapper_cfg, default_args=dict(optimizer=optimizer))
