"""The base architectures, one module each, behind the :class:`ArchAdapter` contract of
:mod:`arcflow.models.arch.base`; :data:`ARCHS` names them for configs (``arch="flux"``).
Adding a base: docs/bases.md."""

from __future__ import annotations

from arcflow.models.arch.base import ArchAdapter, Cond, is_float8
from arcflow.models.arch.flux import FluxAdapter
from arcflow.models.arch.flux2 import Flux2KleinAdapter
from arcflow.models.arch.flux_kontext import FluxKontextAdapter
from arcflow.models.arch.qwen_image import QwenImageAdapter
from arcflow.models.arch.qwen_image_edit import QwenImageEditAdapter

__all__ = [
    "ARCHS",
    "ArchAdapter",
    "Cond",
    "Flux2KleinAdapter",
    "FluxAdapter",
    "FluxKontextAdapter",
    "QwenImageAdapter",
    "QwenImageEditAdapter",
    "arch_for_published_class",
    "get_arch",
    "is_float8",
]

ARCHS: dict[str, ArchAdapter] = {
    adapter.name: adapter
    for adapter in (
        FluxAdapter(),
        QwenImageAdapter(),
        FluxKontextAdapter(),
        QwenImageEditAdapter(),
        Flux2KleinAdapter(),
    )
}


def get_arch(arch: str | ArchAdapter) -> ArchAdapter:
    """The adapter named ``arch`` (a key of :data:`ARCHS`); an adapter passes through."""
    if isinstance(arch, ArchAdapter):
        return arch
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; known: {sorted(ARCHS)}")
    return ARCHS[arch]


def arch_for_published_class(class_name: str) -> ArchAdapter:
    """The adapter whose published ``_class_name`` is ``class_name``."""
    for adapter in ARCHS.values():
        if adapter.published_class_name == class_name:
            return adapter
    known = sorted(a.published_class_name for a in ARCHS.values())
    raise ValueError(f"unknown ArcFlow adapter class {class_name!r}; known: {known}")
