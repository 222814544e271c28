"""Base transformers: loaded from the Hub or a local diffusers folder, or built from a config.

``build_transformer(arch, "full")`` gives the released architectures (FLUX.1-dev: 11.9 B
parameters, Qwen-Image: 20.4 B) on the meta device, which costs no memory: enough to count
parameters or check shapes. Other sizes come from a dict of constructor arguments or by name from
``arcflow.registry.ARCHITECTURES`` (the tiny world's ``"tiny"``, ``"toy"``, ``"benchmark"``, once
``arcflow.tinyworld.architectures`` is imported).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from diffusers import ModelMixin
from torch import nn

from arcflow.errors import SourceError
from arcflow.models.arch import ArchAdapter, get_arch
from arcflow.models.student import resolve_dtype

_CONFIG = "config.json"
_WEIGHTS_GLOB = "diffusion_pytorch_model*.safetensors"


def _local_model_folder(root: Path, subfolder: str | None) -> Path:
    """The folder holding ``config.json`` + weights: ``root/subfolder`` or ``root`` itself."""
    candidates = [root / subfolder, root] if subfolder else [root]
    for folder in candidates:
        if (folder / _CONFIG).is_file():
            if not any(folder.glob(_WEIGHTS_GLOB)):
                raise FileNotFoundError(
                    f"{folder} has a {_CONFIG} but no {_WEIGHTS_GLOB} weights file"
                )
            return folder
    looked = " or ".join(str(folder / _CONFIG) for folder in candidates)
    raise FileNotFoundError(f"not a diffusers model folder: missing {looked}")


def load_base_transformer(
    model: str | Path,
    arch: str | ArchAdapter,
    torch_dtype: torch.dtype | str | None = None,
    subfolder: str | None = "transformer",
) -> ModelMixin:
    """Load the base (teacher) transformer with diffusers' ``from_pretrained``.

    Args:
        model: a Hub id (``"black-forest-labs/FLUX.1-dev"``, ``"Qwen/Qwen-Image"``) or a local
            folder: a pipeline folder with ``<subfolder>/config.json`` or the transformer folder.
        arch: a key of :data:`arcflow.models.arch.ARCHS` (``"flux"``, ``"qwen_image"``, ...).
        torch_dtype: e.g. ``torch.bfloat16`` or ``"bfloat16"``; None is diffusers' default,
            float32 (weights stored in half precision are upcast).
        subfolder: the transformer's folder inside a pipeline folder or repository.
    """
    adapter = get_arch(arch)
    cls = adapter.transformer_cls
    root = Path(model).expanduser()
    if root.is_dir():
        source = str(_local_model_folder(root, subfolder))
        kwargs: dict[str, Any] = {"local_files_only": True}
    else:
        source = str(model)
        kwargs = {"subfolder": subfolder}
    where = f"{model}/{subfolder}" if subfolder and not root.is_dir() else source
    try:
        # diffusers would load another class's folder into this one, with random weights.
        class_name = cls.load_config(source, **kwargs).get("_class_name")
        if class_name != cls.__name__:
            raise TypeError(
                f"{where} holds a {class_name}, but arch {adapter.name!r} expects a {cls.__name__}"
            )
        transformer = cls.from_pretrained(source, torch_dtype=resolve_dtype(torch_dtype), **kwargs)
    except OSError as error:
        if root.is_dir():
            raise
        raise SourceError(
            f"could not load the {cls.__name__} '{where}': it is not a local folder and the "
            f"Hugging Face Hub did not provide it ({error}). Without network access, download it "
            f"elsewhere and pass the local diffusers folder (the one containing "
            f"{subfolder or '.'}/{_CONFIG} and {_WEIGHTS_GLOB})."
        ) from error
    return transformer.eval()


def named_config(arch: str | ArchAdapter, name: str) -> dict[str, Any]:
    """Constructor arguments of the architecture called ``name``: ``"full"`` (the released
    model) or a size registered in ``arcflow.registry.ARCHITECTURES``."""
    from arcflow.registry import ARCHITECTURES

    adapter = get_arch(arch)
    if name == "full":
        return dict(adapter.full_config)
    sizes = ARCHITECTURES.module_dict.get(name)
    if sizes is None:
        known = ["full", *sorted(ARCHITECTURES.module_dict)]
        raise ValueError(
            f"no transformer architecture named {name!r}; known: {known}. The tiny world's sizes "
            "(tiny, toy, benchmark) exist once arcflow.tinyworld.architectures is imported: a "
            'config says custom_imports = dict(imports=["arcflow.tinyworld.architectures"])'
        )
    return dict(sizes(adapter.family or adapter.name))


def build_transformer(
    arch: str | ArchAdapter,
    config: dict[str, Any] | str = "full",
    device: torch.device | str = "meta",
    torch_dtype: torch.dtype | str | None = None,
) -> ModelMixin:
    """Build a base transformer from constructor arguments, randomly initialised.

    Args:
        config: an architecture's name (``"full"`` for the released one, see
            :func:`named_config`) or a dict of constructor arguments (a misspelt key is a
            TypeError, not a silent default).
        device: ``"meta"`` (default) allocates nothing: shapes and parameter counts only.
    """
    adapter = get_arch(arch)
    if isinstance(config, str):
        kwargs = named_config(adapter, config)
    elif isinstance(config, dict):
        kwargs = dict(config)
    else:
        raise ValueError(
            f"config must be an architecture name or a dict of constructor arguments, got "
            f"{config!r}"
        )
    with torch.device(device):
        transformer = adapter.transformer_cls(**kwargs)
    dtype = resolve_dtype(torch_dtype)
    if dtype is not None:
        # nn.Module.to: ModelMixin.to warns about float32-kept modules, which these classes lack.
        nn.Module.to(transformer, dtype=dtype)
    return transformer.eval()


def folder_fingerprint(
    folder: str | Path, patterns: tuple[str, ...] = ("*.safetensors",)
) -> str | None:
    """First 12 hex digits of the SHA-256 of a local folder's files matching ``patterns`` (in name
    order): which weights made a result or a cache. None for a Hub id or a folder without them."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    found = {path for pattern in patterns for path in folder.glob(pattern) if path.is_file()}
    if not found:
        return None
    digest = hashlib.sha256()
    for path in sorted(found):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]
