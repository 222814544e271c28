"""Turning a config file and command-line options into a ready mmengine config."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.distributed as dist
from mmengine.config import Config

# Top-level keys mmengine's Runner reads, plus the project's own. Anything else is a typo that
# mmengine would silently ignore; names starting with "_" are config-local helpers.
RUNNER_KEYS = {
    "model", "work_dir", "train_dataloader", "val_dataloader", "test_dataloader", "train_cfg",
    "val_cfg", "test_cfg", "auto_scale_lr", "optim_wrapper", "param_scheduler", "val_evaluator",
    "test_evaluator", "default_hooks", "custom_hooks", "data_preprocessor", "load_from", "resume",
    "launcher", "env_cfg", "log_processor", "log_level", "visualizer", "default_scope",
    "randomness", "experiment_name", "model_wrapper_cfg", "find_unused_parameters", "cfg",
}  # fmt: skip
PROJECT_KEYS = {"run_name", "checkpoint_dir", "wandb"}
# ``env_cfg`` keys: mmengine's own (Runner.setup_env), then the project's (ArcFlowRunner.setup_env).
ENV_CFG_KEYS = {"cudnn_benchmark", "mp_cfg", "dist_cfg", "resource_limit", "cudnn_attention"}


def check_config_keys(cfg: Config) -> None:
    """Fail on a top-level or ``env_cfg`` key that neither the Runner nor the project reads."""
    unknown = sorted(
        k for k in cfg if not k.startswith("_") and k not in RUNNER_KEYS | PROJECT_KEYS
    )
    if unknown:
        raise KeyError(
            f"unknown top-level config key(s) {unknown}: nothing reads them (a typo?). Known keys: "
            f"{sorted(RUNNER_KEYS | PROJECT_KEYS)}; prefix config-local helpers with '_'."
        )
    unknown = sorted(set(cfg.get("env_cfg") or {}) - ENV_CFG_KEYS)
    if unknown:
        raise KeyError(
            f"unknown env_cfg key(s) {unknown}: nothing reads them (a typo?). Known keys: "
            f"{sorted(ENV_CFG_KEYS)}."
        )


def init_cpu_process_group() -> None:
    """Under torchrun without CUDA, start a gloo group before the Runner would try NCCL."""
    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")


def prepare_config(
    config: str,
    work_dir: str | None = None,
    cfg_options: dict | None = None,
    launcher: str = "none",
    resume: bool = True,
    seed: int | None = None,
) -> Config:
    """Load ``config`` and fill in the run's name, folders, launcher, resume flag and seed.

    The run is named after the config file (``run_name`` overrides): logs go to
    ``work_dirs/<run>/`` and checkpoints to ``checkpoints/<run>/`` unless the config says.
    """
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    check_config_keys(cfg)
    run = cfg.get("run_name") or Path(config).stem
    cfg.run_name = run
    cfg.work_dir = work_dir or cfg.get("work_dir") or str(Path("work_dirs") / run)
    checkpoint_dir = cfg.get("checkpoint_dir") or (
        str(Path(cfg.work_dir) / "checkpoints") if work_dir else str(Path("checkpoints") / run)
    )
    cfg.checkpoint_dir = checkpoint_dir
    for hook in cfg.get("custom_hooks", []):
        if hook.get("type") == "ArcFlowCheckpointHook":
            hook.setdefault("out_dir", checkpoint_dir)
            hook["resume"] = resume
    # mmengine's own checkpointing would save the frozen base; ours saves trainable tensors.
    cfg.setdefault("default_hooks", {})
    cfg.default_hooks["checkpoint"] = None
    cfg.resume = False
    cfg.load_from = None
    cfg.launcher = launcher
    if launcher != "none":
        if not torch.cuda.is_available():
            init_cpu_process_group()
        wrapper = cfg.get("model_wrapper_cfg") or dict(type="ArcFlowDDP")
        cfg.model_wrapper_cfg = wrapper
    if seed is not None:
        cfg.setdefault("randomness", {})
        cfg.randomness["seed"] = seed
        if "seed" in cfg.model:
            cfg.model["seed"] = seed
    os.makedirs(cfg.work_dir, exist_ok=True)
    return cfg
