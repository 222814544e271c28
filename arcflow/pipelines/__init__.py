"""The diffusers pipelines built on the one sampling loop (:mod:`arcflow.flow.sampling`), their
loading as the command lines ask (:mod:`~arcflow.pipelines.loading`), the command line itself and
the export of training checkpoints.

Names are imported on first use: ``inference_*.py --help`` then starts without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ArcFluxPipeline": "flux",
    "ArcFluxKontextPipeline": "flux_kontext",
    "ArcQwenImagePipeline": "qwen_image",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
