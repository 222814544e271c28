"""Student and teacher networks: FLUX.1-dev and Qwen-Image transformers with ArcFlow heads, LoRA,
and the published adapter format.

The names below are imported on first use, so that the pure-torch modules of this package (the
distiller, the imitation loss) load without diffusers and peft.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ArcFlowHead": "heads",
    "ForkedLinear": "heads",
    "ArcFlowStudent": "student",
    "ArchAdapter": "arch",
    "FluxAdapter": "arch",
    "QwenImageAdapter": "arch",
    "get_arch": "arch",
    "released_lora_targets": "lora",
    "build_transformer": "loading",
    "load_base_transformer": "loading",
    "deepen_transformer": "growth",
    "ParamCounts": "builder",
    "build_student_from_cfg": "builder",
    "count_parameters": "builder",
    "load_arcflow_adapter": "adapter_format",
    "save_arcflow_adapter": "adapter_format",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
