"""Build an :class:`ArcFlowStudent` from a config dict (the ``student`` entry of a config).

::

    student = dict(
        arch="flux",                                   # or "qwen_image"
        transformer=dict(
            from_config="full",                        # a name ("full", "tiny") or a dict
            from_pretrained="black-forest-labs/FLUX.1-dev",  # Hub id or local folder (optional)
            subfolder="transformer",
            torch_dtype="bfloat16",
        ),
        num_components=16, lora_rank=256, ...,         # ArcFlowStudent keyword arguments
    )

On the meta device the architecture comes from ``from_config`` (without it, from
``from_pretrained``'s config.json) and no weight is loaded (parameter counts, shape checks,
exports). Elsewhere ``from_pretrained`` loads the weights (checked against
``from_config`` when both are given); without it the base is randomly initialised (tiny models).
``merge_loras=[dict(path="style.safetensors", weight=0.8)]`` merges LoRAs into the loaded base
before anything else: the teacher is then the model ``--lora`` samples, and the student is
distilled from it (:mod:`arcflow.models.teacher_source`; the exported adapter records it).
``deepen=2`` grows the loaded base to twice the depth in its default growable stack without
changing its output, ``deepen=dict(transformer_blocks=2)`` a named stack
(``arcflow.models.growth``). A ``from_config`` dict then describes the grown model; a name
(``"tiny"``, ``arcflow.models.loading.named_config``) the model before growth.
A misspelt key is a TypeError.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
from diffusers import ModelMixin

from arcflow.models import teacher_source
from arcflow.models.arch import get_arch
from arcflow.models.growth import Growth, deepen_transformer, deepened_config, growth_factors
from arcflow.models.loading import build_transformer, load_base_transformer, named_config
from arcflow.models.student import ArcFlowStudent
from arcflow.models.teacher_source import lora_entries, teacher_record


class ParamCounts(NamedTuple):
    trainable: int
    frozen: int  # the base (teacher) model: every original weight, frozen
    total: int


def _constructor_args(arch: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of a saved or built model's config that its class's constructor takes."""
    cls = get_arch(arch).transformer_cls
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    return {key: value for key, value in config.items() if key in accepted}


def _pretrained_config(arch: str, pretrained: str, subfolder: str | None) -> dict[str, Any]:
    """Constructor arguments of the transformer saved at ``pretrained`` (its config.json)."""
    cls = get_arch(arch).transformer_cls
    return _constructor_args(arch, cls.load_config(pretrained, subfolder=subfolder))


def transformer_architecture(
    arch: str, from_config: Mapping[str, Any] | str, deepen: Growth = 1
) -> dict[str, Any]:
    """Constructor arguments a ``transformer.from_config`` entry describes: a dict as it is (the
    grown model), a name (``"full"``, ``"tiny"``: :func:`named_config`) grown by ``deepen``."""
    if isinstance(from_config, str):
        return deepened_config(arch, named_config(arch, from_config), deepen)
    return dict(from_config)


def build_base_from_cfg(
    arch: str,
    device: torch.device | str = "meta",
    *,
    from_config: dict[str, Any] | str | None = None,
    from_pretrained: str | None = None,
    subfolder: str | None = "transformer",
    torch_dtype: torch.dtype | str | None = None,
    deepen: Growth = 1,
    merge_loras: Sequence[Mapping[str, Any]] = (),
) -> ModelMixin:
    """The base transformer of a ``transformer=dict(...)`` config entry (see the module doc)."""
    loras = lora_entries(merge_loras)
    if loras and from_pretrained is None:
        raise ValueError(
            "transformer.merge_loras merges LoRAs into trained weights: it needs "
            "transformer.from_pretrained"
        )
    grows = any(factor != 1 for factor in growth_factors(arch, deepen).values())
    if grows and from_pretrained is None:
        raise ValueError(
            f"transformer.deepen={deepen} grows a trained model: it needs "
            "transformer.from_pretrained (a random base is built at its size by from_config)"
        )
    if from_config is not None:
        from_config = transformer_architecture(arch, from_config, deepen)
    if str(device) == "meta" and from_config is None and from_pretrained is not None:
        # The architecture from the model's config.json alone; no weights are read.
        from_config = deepened_config(
            arch, _pretrained_config(arch, from_pretrained, subfolder), deepen
        )
    if str(device) == "meta" or from_pretrained is None:
        if from_config is None:
            raise ValueError(
                f"building on {device} needs transformer.from_config (an architecture name "
                "such as 'full', or constructor args) or transformer.from_pretrained"
            )
        return build_transformer(arch, from_config, device=device, torch_dtype=torch_dtype)
    transformer = load_base_transformer(from_pretrained, arch, torch_dtype, subfolder)
    teacher_source.merge_loras(transformer, get_arch(arch).text_pipeline_cls, loras)
    if grows:
        transformer = deepen_transformer(transformer, arch, deepen)
    if from_config is not None:
        for key, value in from_config.items():
            loaded = transformer.config.get(key)
            if isinstance(value, (list, tuple)) and isinstance(loaded, (list, tuple)):
                value, loaded = list(value), list(loaded)
            if loaded != value:
                raise ValueError(
                    f"{from_pretrained} has {key}={loaded!r}, the config expects {value!r}"
                )
    return transformer.to(device)


def base_architecture(arch: str, **transformer: Any) -> dict[str, Any]:
    """Constructor arguments of the base a ``transformer=dict(...)`` entry builds, growth
    included, with no weight read (built on the meta device): e.g. to rebuild a trained run's
    model before loading its checkpoint."""
    return _constructor_args(arch, build_base_from_cfg(arch, "meta", **transformer).config)


def build_student_from_cfg(
    cfg: Mapping[str, Any], device: torch.device | str = "meta"
) -> ArcFlowStudent:
    """``dict(arch=..., transformer=dict(...), **ArcFlowStudent kwargs)`` -> the student."""
    kwargs = dict(cfg)
    missing = [key for key in ("arch", "transformer") if key not in kwargs]
    if missing:
        raise KeyError(f"student config lacks {missing}")
    arch = kwargs.pop("arch")
    transformer_cfg = dict(kwargs.pop("transformer"))
    transformer = build_base_from_cfg(arch, device, **transformer_cfg)
    student = ArcFlowStudent(transformer, arch, **kwargs)
    if transformer_cfg.get("from_pretrained") is not None:
        student.teacher_source = teacher_record(
            transformer_cfg["from_pretrained"], transformer_cfg.get("merge_loras", ())
        )
    return student


def count_parameters(student: ArcFlowStudent) -> ParamCounts:
    """Trainable (heads + ``norm_out.linear`` + LoRA), frozen (the base) and total counts."""
    trainable = sum(param.numel() for _, param in student.trainable_named_parameters())
    total = sum(param.numel() for param in student.parameters())
    return ParamCounts(trainable, total - trainable, total)
