"""Weights & Biases logging turned on by a config key, its mode chosen from the environment.

mmengine forbids two base configs that set the same key and a base config that imports anything, so
``configs/_base_/runtime/wandb.py`` sets only ``wandb = dict(<wandb.init arguments>)``; the runner
adds the backend to the configured visualizer (:func:`add_wandb_backend`) and the backend picks
online or offline mode when the run starts (:func:`wandb_mode`)."""

from __future__ import annotations

import copy
import os

import numpy as np
from mmengine.config import Config
from mmengine.visualization import WandbVisBackend
from mmengine.visualization.vis_backend import force_init_env

from arcflow.registry import VISBACKENDS


def wandb_mode() -> str:
    """``WANDB_MODE`` when set; otherwise online when an API key is present, offline without."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def add_wandb_backend(cfg: Config) -> Config:
    """``cfg`` with a W&B backend after its visualizer's others when it has a ``wandb`` key."""
    if cfg.get("wandb") is None:
        return cfg
    cfg = copy.deepcopy(cfg)
    backend = dict(type="ArcFlowWandbVisBackend", init_kwargs=dict(cfg.wandb))
    cfg.visualizer.vis_backends = [*cfg.visualizer.vis_backends, backend]
    return cfg


@VISBACKENDS.register_module()
class ArcFlowWandbVisBackend(WandbVisBackend):
    """mmengine's wandb backend with two changes.

    - The mode is chosen when the run starts (``wandb_mode``), not in the config: mmengine refuses
      to inherit a base config that imports ``os``.
    - Scalars and images are logged at the training iteration mmengine passes, so W&B's x axis is
      the iteration, as in TensorBoard (mmengine's backend drops the step and lets wandb count
      calls).
    """

    def _init_env(self) -> None:
        self._init_kwargs = {"mode": wandb_mode(), **(self._init_kwargs or {})}
        super()._init_env()

    @force_init_env
    def add_image(self, name: str, image: np.ndarray, step: int = 0, **kwargs) -> None:
        self._wandb.log({name: self._wandb.Image(image)}, step=step)

    @force_init_env
    def add_scalar(self, name: str, value: float, step: int = 0, **kwargs) -> None:
        self._wandb.log({name: value}, step=step)

    @force_init_env
    def add_scalars(self, scalar_dict: dict, step: int = 0, file_path=None, **kwargs) -> None:
        self._wandb.log(scalar_dict, step=step)
