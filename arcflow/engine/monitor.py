"""Throughput and memory scalars for the logs (TensorBoard, wandb, text)."""

from __future__ import annotations

import resource
import sys
import time

import torch
from mmengine.hooks import Hook

from arcflow.registry import HOOKS


def peak_memory_mb() -> float:
    """Peak CUDA memory allocated when on CUDA, else the process's peak resident set size."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


@HOOKS.register_module()
class ThroughputHook(Hook):
    """Logs ``train/it_per_s`` (over the last iteration) and ``train/peak_mem_mb``."""

    priority = "NORMAL"

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        self._start = time.perf_counter()

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        elapsed = time.perf_counter() - self._start
        runner.message_hub.update_scalar("train/it_per_s", 1.0 / max(elapsed, 1e-9))
        runner.message_hub.update_scalar("train/peak_mem_mb", peak_memory_mb())
