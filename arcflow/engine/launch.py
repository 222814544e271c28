"""Turning a config file and command-line options into a ready mmengine config."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
import torch.distributed as dist
from mmengine.config import Config

from arcflow.errors import UserError, did_you_mean, writable_dir

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
# Read by mmengine's Config.fromfile itself (it imports these modules while loading the file).
CONFIG_FILE_KEYS = {"custom_imports"}
# ``env_cfg`` keys: mmengine's own (Runner.setup_env), then the project's (ArcFlowRunner.setup_env).
ENV_CFG_KEYS = {"cudnn_benchmark", "mp_cfg", "dist_cfg", "resource_limit", "cudnn_attention"}


class ConfigError(UserError):
    """A config file that does not exist, or a key that nothing reads."""


def _check_known(keys: list[str], known: set[str], where: str, hint: str = "") -> None:
    unknown = sorted(k for k in keys if k not in known)
    if unknown:
        key = unknown[0]
        raise ConfigError(
            f"unknown config key {where}{key}{did_you_mean(key, known)}: nothing reads it. Known "
            f"keys: {', '.join(sorted(known))}{hint}."
        )


def _check_arguments(cfg: Mapping, target: Callable, where: str) -> None:
    """Fail on a key of ``cfg`` that ``target`` takes no argument for (``type`` aside)."""
    params = inspect.signature(target).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    _check_known([k for k in cfg if k != "type"], set(params) - {"self"}, where)


def check_model_keys(model: Mapping) -> None:
    """Fail on a ``model`` (or ``model.student``) key that the model's class does not take."""
    from arcflow.models.student import ArcFlowStudent
    from arcflow.registry import MODELS

    cls = MODELS.get(model.get("type", ""))
    if cls is None:
        return  # mmengine's build names an unknown type itself
    _check_arguments(model, cls, "model.")
    student = model.get("student")
    if "student" in inspect.signature(cls).parameters and isinstance(student, Mapping):
        _check_arguments(student, ArcFlowStudent, "model.student.")


# Keys of ``train_dataloader`` that mmengine's build_dataloader reads itself; the rest go to
# torch's DataLoader.
DATALOADER_KEYS = {"dataset", "sampler", "batch_sampler", "collate_fn", "worker_init_fn"}
# Arguments a built object receives from the Runner rather than from its config.
PROVIDED = {"runner", "dataloader", "optimizer", "params", "dataset"}


def _check_built(cfg: object, registry: object, where: str) -> None:
    """Fail on a key of a ``dict(type=...)`` entry that the registered class does not take."""
    if not isinstance(cfg, Mapping) or not isinstance(cfg.get("type"), str):
        return
    cls = registry.get(cfg["type"])
    if cls is None:
        return  # mmengine's build names an unknown type itself
    params = inspect.signature(cls).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    _check_known([k for k in cfg if k != "type"], set(params) - {"self"} - PROVIDED, where)


def check_component_keys(cfg: Config) -> None:
    """Fail on a misspelt key of the training loop, optimiser, data loader, dataset, sampler,
    schedulers or hooks, which mmengine would pass on as an unexpected-argument traceback or
    ignore."""
    import mmengine.dataset  # noqa: F401  (register mmengine's own classes)
    import mmengine.hooks  # noqa: F401
    import mmengine.optim  # noqa: F401
    import mmengine.runner  # noqa: F401
    from torch.utils.data import DataLoader

    from arcflow.registry import DATA_SAMPLERS, DATASETS, HOOKS, LOOPS, OPTIMIZERS, PARAM_SCHEDULERS

    train_cfg = cfg.get("train_cfg")
    if isinstance(train_cfg, Mapping):
        _check_built({"type": "IterBasedTrainLoop", **train_cfg}, LOOPS, "train_cfg.")
    optim = cfg.get("optim_wrapper")
    if isinstance(optim, Mapping):
        _check_built(optim.get("optimizer"), OPTIMIZERS, "optim_wrapper.optimizer.")
    loader = cfg.get("train_dataloader")
    if isinstance(loader, Mapping):
        known = DATALOADER_KEYS | set(inspect.signature(DataLoader).parameters) - {"self"}
        _check_known(list(loader), known, "train_dataloader.")
        _check_built(loader.get("dataset"), DATASETS, "train_dataloader.dataset.")
        _check_built(loader.get("sampler"), DATA_SAMPLERS, "train_dataloader.sampler.")
    schedulers = cfg.get("param_scheduler") or []
    for i, scheduler in enumerate(schedulers if isinstance(schedulers, list) else [schedulers]):
        _check_built(scheduler, PARAM_SCHEDULERS, f"param_scheduler[{i}].")
    for i, hook in enumerate(cfg.get("custom_hooks") or []):
        _check_built(hook, HOOKS, f"custom_hooks[{i}].")
    for name, hook in (cfg.get("default_hooks") or {}).items():
        _check_built(hook, HOOKS, f"default_hooks.{name}.")


def check_config_keys(cfg: Config) -> None:
    """Fail on a top-level, ``env_cfg``, model or component key that neither the Runner nor the
    project reads, naming the nearest known key."""
    _check_known(
        [k for k in cfg if not k.startswith("_")],
        RUNNER_KEYS | PROJECT_KEYS | CONFIG_FILE_KEYS,
        "",
        "; prefix config-local helpers with '_'",
    )
    _check_known(list(cfg.get("env_cfg") or {}), ENV_CFG_KEYS, "env_cfg.")
    if isinstance(cfg.get("model"), Mapping):
        check_model_keys(cfg.model)
    check_component_keys(cfg)


def check_option_types(cfg: Config, options: Mapping[str, object]) -> None:
    """A ``--cfg-options`` value whose type cannot stand for the config's own is an error: a
    word where the config holds a number (``train_cfg.max_iters=abc``) or a flag."""
    tree = cfg.to_dict()
    for dotted, value in options.items():
        node: object = tree
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                node = None
                break
            node = node[part]
        if node is None or not isinstance(value, str):
            continue
        if isinstance(node, bool):
            expected = "true or false (True / False)"
        elif isinstance(node, (int, float)):
            expected = "a number"
        else:
            continue
        raise ConfigError(
            f"--cfg-options {dotted}={value}: expected {expected}, as the config's {node!r}"
        )


def load_config(config: str | Path) -> Config:
    """``Config.fromfile``, with a missing file reported as a ConfigError naming the closest."""
    path = Path(config)
    if not path.is_file():
        siblings = [p.name for p in path.parent.glob("*.py")] if path.parent.is_dir() else []
        raise ConfigError(
            f"config {config} does not exist{did_you_mean(path.name, siblings)}: give the path of "
            "an mmengine Python config, such as configs/tiny/arcflow_tiny_flux.py"
        )
    try:
        return Config.fromfile(str(path))
    except SyntaxError as error:
        raise ConfigError(
            f"config {config} is not valid Python: {error.msg} at line {error.lineno}"
        ) from None


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
    resume_from: str | None = None,
    preempt_signal: str | None = None,
) -> Config:
    """Load ``config`` and fill in the run's name, folders, launcher, resume flag and seed.

    The run is named after the config file (``run_name`` overrides): logs go to
    ``work_dirs/<run>/`` and checkpoints to ``checkpoints/<run>/`` unless the config says.
    ``resume_from`` and ``preempt_signal`` (None: the config's) go to the checkpoint hook.
    """
    cfg = load_config(config)
    if cfg_options:
        check_option_types(cfg, cfg_options)
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
            if resume_from is not None:
                hook["resume_from"] = resume_from
            if preempt_signal is not None:
                hook["preempt_signal"] = preempt_signal
    # mmengine's own checkpointing would save the frozen base; ours saves trainable tensors.
    cfg.setdefault("default_hooks", {})
    cfg.default_hooks["checkpoint"] = None
    cfg.resume = False
    cfg.load_from = None
    cfg.launcher = launcher
    if launcher != "none" and not {"RANK", "WORLD_SIZE", "MASTER_ADDR"} <= set(os.environ):
        raise ConfigError(
            f"--launcher {launcher} runs under torchrun, which sets RANK and WORLD_SIZE: start "
            f"with torchrun --nproc_per_node=N tools/train.py {config} --launcher {launcher}, "
            "or drop --launcher for one process"
        )
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
    writable_dir(cfg.work_dir, "--work-dir").mkdir(parents=True, exist_ok=True)
    return cfg
