"""Procedural edit pairs of the tiny world: (source scene, instruction, target scene).

An instruction names one object of the source by its shape. Each form changes one attribute:

========  ===================================================  ==========================
form      instruction                                          edited cells
========  ===================================================  ==========================
color     ``make the <shape> <colour>``                        the object's
move      ``move the <shape> to the <position>``               the old and the new one
size      ``make the <shape> <size>``                          the object's
shape     ``turn the <shape> into a <shape>``                  the object's
remove    ``remove the <shape>``                               the object's
add       ``add a <size> <colour> <shape> <position phrase>``  the new object's
========  ===================================================  ==========================

``<position>`` is a grid cell's name ("top left", "center", "right"). ``<position phrase>`` is
its first caption phrase ("at the top left", "in the center", "on the right"). Everything else
carries over to the target: background, the other object, and the edited object's jitter (offset,
scale and shade). Objects never leave their grid cell, so source and target renders are identical
outside the edited cells. Preservation is measured there.

A pair is a pure function of ``(split, seed, index)``, as the caption datasets' items are.
Training pairs come from training scenes, and their targets hold training combinations only.
Held-out pairs start from held-out scenes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from arcflow.tinyworld.scenes import (
    _POSITION_PHRASES,
    _TRAIN_COMBOS,
    COLORS,
    IMAGE_SIZE,
    POSITIONS,
    SHAPES,
    SIZES,
    SPLITS,
    Scene,
    _grid_cell,
    _sample_object,
    render,
    sample_heldout_scene,
    sample_scene,
)

EDIT_FORMS = ("color", "move", "size", "shape", "remove", "add")
_TRAIN = frozenset(_TRAIN_COMBOS)


@dataclass(frozen=True)
class EditPair:
    source: Scene
    instruction: str
    target: Scene
    form: str
    edited: tuple[str, ...]  # grid cells the edit may change (positions)

    def preserved_mask(self, image_size: int = IMAGE_SIZE) -> np.ndarray:
        """``(image_size, image_size)`` bool: True outside the edited cells."""
        mask = np.ones((image_size, image_size), dtype=bool)
        for position in self.edited:
            row, col = _grid_cell(position)
            rows = slice(row * image_size // 3, (row + 1) * image_size // 3)
            cols = slice(col * image_size // 3, (col + 1) * image_size // 3)
            mask[rows, cols] = False
        return mask


def position_phrase(position: str) -> str:
    """The caption phrase of a grid cell: "at the top left", "in the center", "on the right"."""
    return _POSITION_PHRASES[position][0]


def _other(rng: np.random.Generator, options: tuple[str, ...], current: str) -> str:
    choices = [o for o in options if o != current]
    return choices[int(rng.integers(len(choices)))]


def _propose(rng: np.random.Generator, scene: Scene, form: str) -> EditPair | None:
    """One edit of ``form`` on ``scene``, or None when the scene does not allow it."""
    objects = list(scene.objects)
    occupied = {o.position for o in objects}
    if form == "add":
        if len(objects) != 1:
            return None
        free = [p for p in POSITIONS if p not in occupied]
        position = free[int(rng.integers(len(free)))]
        combo = (
            list(COLORS)[int(rng.integers(len(COLORS)))],
            SHAPES[int(rng.integers(len(SHAPES)))],
            SIZES[int(rng.integers(len(SIZES)))],
            position,
        )
        new = _sample_object(rng, combo)
        instruction = f"add a {new.size} {new.color} {new.shape} {position_phrase(position)}"
        return EditPair(
            scene, instruction, replace(scene, objects=(*objects, new)), form, (position,)
        )
    if form == "remove" and len(objects) != 2:
        return None
    index = int(rng.integers(len(objects)))
    obj = objects[index]
    if sum(o.shape == obj.shape for o in objects) > 1:
        return None  # "the <shape>" would name two objects
    rest = objects[:index] + objects[index + 1 :]
    edited: tuple[str, ...] = (obj.position,)
    if form == "remove":
        return EditPair(
            scene, f"remove the {obj.shape}", replace(scene, objects=tuple(rest)), form, edited
        )
    if form == "color":
        new = replace(obj, color=_other(rng, tuple(COLORS), obj.color))
        instruction = f"make the {obj.shape} {new.color}"
    elif form == "size":
        new = replace(obj, size=_other(rng, SIZES, obj.size))
        instruction = f"make the {obj.shape} {new.size}"
    elif form == "shape":
        new = replace(obj, shape=_other(rng, SHAPES, obj.shape))
        if any(o.shape == new.shape for o in rest):
            return None  # the target would hold two objects of one shape
        instruction = f"turn the {obj.shape} into a {new.shape}"
    elif form == "move":
        free = [p for p in POSITIONS if p not in occupied]
        new = replace(obj, position=free[int(rng.integers(len(free)))])
        instruction = f"move the {obj.shape} to the {new.position}"
        edited = (obj.position, new.position)
    else:
        raise ValueError(f"unknown edit form {form!r}; known: {EDIT_FORMS}")
    objects[index] = new
    return EditPair(scene, instruction, replace(scene, objects=tuple(objects)), form, edited)


def sample_edit(split: str, seed: int, index: int, form: str | None = None) -> EditPair:
    """The edit pair at ``index`` of a split (a pure function of the arguments); ``form`` None
    draws one of :data:`EDIT_FORMS` uniformly."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if form is not None and form not in EDIT_FORMS:
        raise ValueError(f"unknown edit form {form!r}; known: {EDIT_FORMS}")
    rng = np.random.default_rng([seed, SPLITS.index(split), index, 7])
    chosen = form or EDIT_FORMS[int(rng.integers(len(EDIT_FORMS)))]
    sample = sample_scene if split == "train" else sample_heldout_scene
    while True:
        objects = {"add": 1, "remove": 2}.get(chosen)
        pair = _propose(rng, sample(rng, objects), chosen)
        if pair is None:
            continue
        if split == "train" and not all(o.combo in _TRAIN for o in pair.target.objects):
            continue  # training targets hold training combinations only
        return pair


def write_edit_pairs(folder: str | Path, count: int, split: str = "train", seed: int = 0) -> Path:
    """The edit-data format on disk, for :class:`~arcflow.data` readers and users alike: source
    images ``images/<index>.png`` and ``edits.jsonl`` with one ``{"image": "images/00000.png",
    "instruction": "make the circle blue"}`` per line. Returns the JSONL path."""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for index in range(count):
        pair = sample_edit(split, seed, index)
        name = f"images/{index:05d}.png"
        Image.fromarray(render(pair.source)).save(folder / name)
        lines.append(json.dumps({"image": name, "instruction": pair.instruction}))
    path = folder / "edits.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path
