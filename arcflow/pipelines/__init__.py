"""Sampling: the one loop over latents, and the diffusers pipelines built on it.

Names are imported on first use: ``inference_*.py --help`` then starts without torch, and
training-time validation imports the sampling loop without diffusers' pipeline modules.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "make_noise": "sampling",
    "sample_student": "sampling",
    "sample_teacher": "sampling",
    "student_sigmas": "sampling",
    "teacher_sigmas": "sampling",
    "ArcFluxPipeline": "flux",
    "ArcQwenImagePipeline": "qwen_image",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
