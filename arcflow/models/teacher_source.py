"""The teacher a student was distilled from: a base model, optionally with LoRAs merged into it.

Distilling *your* model means distilling what you sample: a base with your style or task LoRAs
merged at their weights (``transformer=dict(from_pretrained=..., merge_loras=[...])`` in a config),
or your finetuned transformer folder (``from_pretrained=FOLDER``). The LoRAs are merged by the
stock diffusers loader, the one ``--lora`` uses at inference, so the teacher is exactly the model
``--model BASE --lora FILE:WEIGHT`` samples.

The student's own LoRA and heads are fitted on top of that teacher, so the same LoRAs belong
under it when it samples. An exported adapter therefore carries :data:`TEACHER_FILE`, which names
the base and the merged LoRAs (file name, weight, SHA-256). Loading the adapter on another base,
or without those LoRAs, gives a one-line warning (:func:`mismatch_note`). The published adapter
format itself is unchanged, and adapters without the file load as before.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from diffusers import ModelMixin

from arcflow.models.loading import folder_fingerprint

TEACHER_FILE = "teacher.json"


def _file_fingerprint(path: Path) -> str | None:
    """The first 12 hex digits of a local file's SHA-256 (None for a Hub LoRA)."""
    return folder_fingerprint(path.parent, (path.name,)) if path.is_file() else None


_LORA_KEYS = {"path", "weight"}


def lora_entries(loras: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``merge_loras`` entries checked: each ``dict(path=..., weight=...)`` (weight optional,
    default 1.0), with a misspelt key named."""
    entries = []
    for index, lora in enumerate(loras):
        if not isinstance(lora, Mapping) or "path" not in lora:
            raise ValueError(
                f"transformer.merge_loras[{index}] must be dict(path=..., weight=...), got {lora!r}"
            )
        unknown = set(lora) - _LORA_KEYS
        if unknown:
            raise KeyError(
                f"transformer.merge_loras[{index}] has unknown keys {sorted(unknown)}; known: "
                f"{sorted(_LORA_KEYS)}"
            )
        entries.append({"path": str(lora["path"]), "weight": float(lora.get("weight", 1.0))})
    return entries


def teacher_record(base: str | None, loras: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """What :data:`TEACHER_FILE` holds: the base as the config names it and each merged LoRA's
    file name, weight and SHA-256 (first 12 hex digits; None for a Hub LoRA)."""
    return {
        "base": base,
        "loras": [
            {
                "name": Path(entry["path"]).name,
                "weight": entry["weight"],
                "sha256": _file_fingerprint(Path(entry["path"]).expanduser()),
            }
            for entry in lora_entries(loras)
        ],
    }


def merge_loras(transformer: ModelMixin, pipeline_cls: type, loras: Sequence[Mapping]) -> None:
    """Merge each LoRA of ``loras`` into ``transformer``'s weights at its weight, through the
    stock ``pipeline_cls`` loader (so any LoRA layout ``--lora`` reads is read here too); the
    transformer holds no LoRA layer afterwards."""
    entries = lora_entries(loras)
    if not entries:
        return
    # The pipeline around the transformer alone: its loader converts LoRA layouts and fuses.
    others = set(inspect.signature(pipeline_cls.__init__).parameters) - {"self", "transformer"}
    pipe = pipeline_cls(transformer=transformer, **{name: None for name in others})
    for index, entry in enumerate(entries):
        path = Path(entry["path"]).expanduser()
        where, options = entry["path"], {}
        if path.is_file():  # diffusers takes a folder and the file's name apart
            where, options = str(path.parent), {"weight_name": path.name}
        name = f"teacher_lora{index}"
        try:
            pipe.load_lora_weights(where, adapter_name=name, **options)
        except Exception as error:  # a wrong path, layout or base alike
            raise ValueError(
                f"could not merge the LoRA '{entry['path']}' into the teacher ({error}); "
                "transformer.merge_loras takes diffusers LoRA files or folders made for this base"
            ) from error
        pipe.fuse_lora(components=["transformer"], lora_scale=entry["weight"], adapter_names=[name])
        pipe.unload_lora_weights()


def write_teacher_record(record: dict[str, Any] | None, out_dir: str | Path) -> None:
    """Write :data:`TEACHER_FILE` into an adapter folder (nothing for an unknown teacher)."""
    if record is None:
        return
    (Path(out_dir) / TEACHER_FILE).write_text(json.dumps(record, indent=2) + "\n")


def read_teacher_record(folder: str | Path) -> dict[str, Any] | None:
    """The record of an adapter folder, or None when it has none (published adapters)."""
    path = Path(folder) / TEACHER_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def _model_name(source: str) -> str:
    """``Qwen/Qwen-Image-2512``, ``/models/Qwen-Image-2512`` and ``.../Qwen-Image-2512/`` all
    name ``Qwen-Image-2512``: the same weights on the Hub or downloaded."""
    return Path(str(source).rstrip("/")).name


def mismatch_note(
    record: dict[str, Any] | None, model: str | None, loras: Sequence[tuple[str, float]] = ()
) -> str | None:
    """One line when an adapter distilled from ``record``'s teacher is loaded on ``model`` with
    ``loras`` (``--lora`` pairs) that are not that teacher, else None."""
    if record is None:
        return None
    problems = []
    base = record.get("base")
    if base and model and _model_name(base) != _model_name(model):
        problems.append(f"on {model}")
    wanted = {(lora["name"], lora["weight"]) for lora in record.get("loras", [])}
    given = {(Path(path).name, float(weight)) for path, weight in loras}
    missing = sorted(wanted - given)
    if missing:
        listed = ", ".join(f"{name}:{weight:g}" for name, weight in missing)
        problems.append(f"without --lora {listed}")
    if not problems:
        return None
    teacher = " + ".join([str(base)] + [f"{n}:{w:g}" for n, w in sorted(wanted)])
    where = " and ".join(problems)
    return (
        f"warning: this adapter was distilled from {teacher}; it is loaded {where}, so its 2 "
        "steps follow a teacher this model is not"
    )
