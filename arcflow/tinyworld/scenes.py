"""The tiny world: procedural captioned scenes, deterministic from a seed and unlimited.

A scene holds one or two coloured shapes on a plain or two-tone background. Each object sits in one
cell of a 3x3 grid (``POSITIONS``, row-major) and two objects never share a cell, so an image is
fully described by what each of the nine cells holds: that is the evaluator's target
(``Scene.slot_targets``). Rendering is numpy with 4x4 supersampling inside each object's bounding
box, well under a millisecond a scene.

Held-out split. An object's *combination* is its (colour, shape, size, position). For every
(colour, shape) pair two of its 18 (size, position) combinations are reserved (``HELDOUT_COMBOS``,
60 of 540, fixed by a constant seed). Train scenes never contain a reserved combination; every
held-out scene contains at least one, and held-out items also draw from a separate random stream.
So every held-out image is one no training image equals, while each colour, shape, size and
position (and every pair of them) is still seen in training.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from itertools import product
from typing import Literal, TypedDict

import numpy as np
import torch
from torch.utils.data import Dataset

from arcflow.data.image_latents import image_to_tensor

IMAGE_SIZE = 64
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 90, 235),
    "yellow": (240, 220, 40),
    "purple": (155, 60, 205),
    "white": (240, 240, 240),
}
# Dark, muted backgrounds so every object colour stands out on every background.
BACKGROUND_COLORS: dict[str, tuple[int, int, int]] = {
    "gray": (100, 100, 100),
    "black": (25, 25, 25),
    "brown": (95, 65, 40),
    "navy": (25, 35, 80),
}
SHAPES = ("circle", "square", "triangle", "star", "cross")
SIZES = ("small", "large")
POSITIONS = (
    *("top left", "top", "top right"),
    *("left", "center", "right"),
    *("bottom left", "bottom", "bottom right"),
)
NUM_POSITIONS = len(POSITIONS)

# Geometry as fractions of the image side: cell centres, half-extent of each size, jitter.
_CELL_CENTERS = (1 / 6, 1 / 2, 5 / 6)
_HALF_EXTENT = {"small": 5.5 / 64, "large": 8.5 / 64}
_MAX_OFFSET = 1.5 / 64
_MAX_SCALE_JITTER = 0.05
_MAX_SHADE_JITTER = 15
_SUPERSAMPLE = 4


def _grid_cell(position: str) -> tuple[int, int]:
    """(row, column) of a position in the 3x3 grid."""
    return divmod(POSITIONS.index(position), 3)


def _reserve_heldout_combos() -> frozenset[tuple[str, str, str, str]]:
    rng = np.random.default_rng(20240605)
    per_pair = list(product(SIZES, POSITIONS))
    reserved = set()
    for color, shape in product(COLORS, SHAPES):
        for i in rng.choice(len(per_pair), size=2, replace=False):
            reserved.add((color, shape, *per_pair[i]))
    return frozenset(reserved)


HELDOUT_COMBOS = _reserve_heldout_combos()
_ALL_COMBOS = list(product(COLORS, SHAPES, SIZES, POSITIONS))
_TRAIN_COMBOS = [c for c in _ALL_COMBOS if c not in HELDOUT_COMBOS]
_SORTED_HELDOUT = sorted(HELDOUT_COMBOS)


@dataclass(frozen=True)
class SceneObject:
    color: str
    shape: str
    size: str
    position: str
    offset: tuple[float, float] = (0.0, 0.0)  # jitter of the centre (dx, dy), fraction of the side
    scale: float = 1.0  # jitter of the half-extent
    shade: tuple[int, int, int] = (0, 0, 0)  # jitter added to the RGB colour

    @property
    def combo(self) -> tuple[str, str, str, str]:
        return (self.color, self.shape, self.size, self.position)

    def center(self, image_size: int = IMAGE_SIZE) -> tuple[float, float]:
        """Centre (x, y) in pixel coordinates; pixel i covers [i, i + 1)."""
        row, col = _grid_cell(self.position)
        return (
            (_CELL_CENTERS[col] + self.offset[0]) * image_size,
            (_CELL_CENTERS[row] + self.offset[1]) * image_size,
        )

    def rgb(self) -> np.ndarray:
        return np.clip(np.add(COLORS[self.color], self.shade), 0, 255).astype(np.float32)


@dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...]
    background: tuple[str, ...]  # one colour (plain) or two (two-tone: top/left half first)
    split: Literal["horizontal", "vertical"] = "horizontal"  # where a two-tone background divides

    def slot_targets(self) -> np.ndarray:
        """(NUM_POSITIONS, 3) int64 of (colour, shape, size) indices per grid cell, -1 if empty."""
        targets = np.full((NUM_POSITIONS, 3), -1, dtype=np.int64)
        for obj in self.objects:
            targets[POSITIONS.index(obj.position)] = (
                list(COLORS).index(obj.color),
                SHAPES.index(obj.shape),
                SIZES.index(obj.size),
            )
        return targets


# ----------------------------------------------------------------------------- rendering
# Shapes are implicit inside-tests on coordinates normalised by the half-extent (y points down).


def _inside_polygon(u: np.ndarray, v: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Even-odd rule; ``u`` (1, W) and ``v`` (H, 1) broadcast to an (H, W) mask."""
    inside = np.zeros(np.broadcast_shapes(u.shape, v.shape), dtype=bool)
    for (x0, y0), (x1, y1) in zip(vertices, np.roll(vertices, 1, axis=0)):
        if y0 == y1:  # a horizontal edge is never crossed by a horizontal ray
            continue
        straddles = (y0 > v) != (y1 > v)
        inside ^= straddles & (u < x0 + (x1 - x0) * (v - y0) / (y1 - y0))
    return inside


def _star_vertices(points: int = 5, inner: float = 0.5) -> np.ndarray:
    angles = -np.pi / 2 + np.arange(2 * points) * np.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


_TRIANGLE = np.array([(0.0, -1.0), (1.0, 0.8), (-1.0, 0.8)])
_STAR = _star_vertices()
_ARM = 0.36  # half-width of the cross's arms

_SHAPE_TESTS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "circle": lambda u, v: u * u + v * v <= 1.0,
    "square": lambda u, v: (np.abs(u) <= 0.85) & (np.abs(v) <= 0.85),
    "triangle": lambda u, v: _inside_polygon(u, v, _TRIANGLE),
    "star": lambda u, v: _inside_polygon(u, v, _STAR),
    "cross": lambda u, v: (
        ((np.abs(u) <= _ARM) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= _ARM) & (np.abs(u) <= 1.0))
    ),
}


def _background(scene: Scene, image_size: int) -> np.ndarray:
    image = np.empty((image_size, image_size, 3), dtype=np.float32)
    image[:] = BACKGROUND_COLORS[scene.background[0]]
    if len(scene.background) == 2:
        half = image_size // 2
        second = image[half:] if scene.split == "horizontal" else image[:, half:]
        second[:] = BACKGROUND_COLORS[scene.background[1]]
    return image


def render(scene: Scene, image_size: int = IMAGE_SIZE) -> np.ndarray:
    """The scene as an (image_size, image_size, 3) uint8 RGB array, objects drawn in order."""
    image = _background(scene, image_size)
    sub = (np.arange(_SUPERSAMPLE) + 0.5) / _SUPERSAMPLE
    for obj in scene.objects:
        cx, cy = obj.center(image_size)
        radius = _HALF_EXTENT[obj.size] * obj.scale * image_size
        x0, x1 = max(int(cx - radius) - 1, 0), min(int(cx + radius) + 2, image_size)
        y0, y1 = max(int(cy - radius) - 1, 0), min(int(cy + radius) + 2, image_size)
        u = ((np.arange(x0, x1)[:, None] + sub).reshape(1, -1) - cx) / radius
        v = ((np.arange(y0, y1)[:, None] + sub).reshape(-1, 1) - cy) / radius
        inside = _SHAPE_TESTS[obj.shape](u, v)
        coverage = inside.reshape(y1 - y0, _SUPERSAMPLE, x1 - x0, _SUPERSAMPLE).mean(axis=(1, 3))
        patch = image[y0:y1, x0:x1]
        patch += coverage[..., None].astype(np.float32) * (obj.rgb() - patch)
    return np.round(image).astype(np.uint8)


def render_batch(scenes: list[Scene], image_size: int = IMAGE_SIZE) -> torch.Tensor:
    """(N, 3, image_size, image_size) float32 in [-1, 1]."""
    return torch.stack([image_to_tensor(render(s, image_size)) for s in scenes])


# ----------------------------------------------------------------------------- sampling


def _sample_object(rng: np.random.Generator, combo: tuple[str, str, str, str]) -> SceneObject:
    color, shape, size, position = combo
    offset = rng.uniform(-_MAX_OFFSET, _MAX_OFFSET, size=2)
    return SceneObject(
        color=color,
        shape=shape,
        size=size,
        position=position,
        offset=(float(offset[0]), float(offset[1])),
        scale=float(1.0 + rng.uniform(-_MAX_SCALE_JITTER, _MAX_SCALE_JITTER)),
        shade=tuple(int(s) for s in rng.integers(-_MAX_SHADE_JITTER, _MAX_SHADE_JITTER + 1, 3)),
    )


def _sample_background(rng: np.random.Generator) -> tuple[tuple[str, ...], str]:
    names = list(BACKGROUND_COLORS)
    count = 1 if rng.random() < 0.5 else 2
    chosen = tuple(names[i] for i in rng.choice(len(names), size=count, replace=False))
    return chosen, ("horizontal", "vertical")[int(rng.integers(2))]


def _sample(
    rng: np.random.Generator,
    combos: list[tuple[str, str, str, str]],
    num_objects: int | None,
    first: tuple[str, str, str, str] | None = None,
) -> Scene:
    """Objects drawn uniformly from ``combos`` at distinct positions (``first`` forced if given)."""
    count = int(rng.integers(1, 3)) if num_objects is None else num_objects
    if count not in (1, 2):
        raise ValueError(f"num_objects must be 1 or 2, got {num_objects}")
    chosen = [first] if first is not None else []
    while len(chosen) < count:
        combo = combos[int(rng.integers(len(combos)))]
        if all(combo[3] != c[3] for c in chosen):
            chosen.append(combo)
    rng.shuffle(chosen)  # the forced held-out object may be mentioned first or second
    objects = tuple(_sample_object(rng, c) for c in chosen)
    background, split = _sample_background(rng)
    return Scene(objects=objects, background=background, split=split)


def sample_scene(rng: np.random.Generator, num_objects: int | None = None) -> Scene:
    """A training scene: 1 or 2 objects (uniformly, unless given), none in ``HELDOUT_COMBOS``."""
    return _sample(rng, _TRAIN_COMBOS, num_objects)


def sample_heldout_scene(rng: np.random.Generator, num_objects: int | None = None) -> Scene:
    """A held-out scene: one object in ``HELDOUT_COMBOS``, the other (if any) unrestricted."""
    first = _SORTED_HELDOUT[int(rng.integers(len(_SORTED_HELDOUT)))]
    return _sample(rng, _ALL_COMBOS, num_objects, first=first)


# ----------------------------------------------------------------------------- captions
# Every phrase is lower-case words without punctuation, so whitespace tokenisation is exact.

_POSITION_PHRASES: dict[str, tuple[str, ...]] = {
    "top left": ("at the top left", "in the top left corner", "in the upper left"),
    "top": ("at the top", "at the top center"),
    "top right": ("at the top right", "in the top right corner", "in the upper right"),
    "left": ("on the left", "on the left side"),
    "center": ("in the center", "in the middle"),
    "right": ("on the right", "on the right side"),
    "bottom left": ("at the bottom left", "in the bottom left corner", "in the lower left"),
    "bottom": ("at the bottom", "at the bottom center"),
    "bottom right": ("at the bottom right", "in the bottom right corner", "in the lower right"),
}
# Relation of the first object to the second.
_RELATION_PHRASES: dict[str, tuple[str, ...]] = {
    "above": ("above", "over"),
    "below": ("below", "under"),
    "left of": ("to the left of",),
    "right of": ("to the right of",),
}
RELATIONS = tuple(_RELATION_PHRASES)
_ONE_OBJECT_TEMPLATES = (
    "{a} {pa}",
    "{a} {pa} on {bg}",
    "there is {a} {pa}",
    "a picture of {a} {pa}",
)
_TWO_OBJECT_TEMPLATES = (
    "{a} {rel} {b}",
    "{a} {rel} {b} on {bg}",
    "there is {a} {rel} {b}",
    "{a} {pa} and {b} {pb}",
    "{a} {pa} and {b} {pb} on {bg}",
)
_BACKGROUND_TEMPLATES = ("a {0} background", "a {0} and {1} background")
SIZE_OMITTED_PROBABILITY = 0.25  # per object: the caption leaves its size out


def relation_holds(relation: str, first: str, second: str) -> bool:
    """Whether an object at position ``first`` is ``relation`` one at position ``second``."""
    (r0, c0), (r1, c1) = _grid_cell(first), _grid_cell(second)
    return {"above": r0 < r1, "below": r0 > r1, "left of": c0 < c1, "right of": c0 > c1}[relation]


def _choice(rng: np.random.Generator, options: tuple[str, ...] | list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _noun_phrase(obj: SceneObject, rng: np.random.Generator, size_omitted: float) -> str:
    words = ["a"]
    if rng.random() >= size_omitted:
        words.append(obj.size)
    return " ".join([*words, obj.color, obj.shape])


def caption(
    scene: Scene, rng: np.random.Generator, size_omitted: float = SIZE_OMITTED_PROBABILITY
) -> str:
    """A random caption true of the scene; any relation it states holds for its positions.

    ``size_omitted``: the probability that an object's size is left out. The random draws do not
    depend on it, so captions of one ``rng`` state differ between values only in size words.
    """
    fields = {
        "a": _noun_phrase(scene.objects[0], rng, size_omitted),
        "pa": _choice(rng, _POSITION_PHRASES[scene.objects[0].position]),
        "bg": _BACKGROUND_TEMPLATES[len(scene.background) - 1].format(*scene.background),
    }
    if len(scene.objects) == 1:
        return _choice(rng, _ONE_OBJECT_TEMPLATES).format(**fields)
    first, second = scene.objects[0].position, scene.objects[1].position
    true_relations = [r for r in RELATIONS if relation_holds(r, first, second)]
    fields |= {
        "b": _noun_phrase(scene.objects[1], rng, size_omitted),
        "pb": _choice(rng, _POSITION_PHRASES[second]),
        "rel": _choice(rng, _RELATION_PHRASES[_choice(rng, true_relations)]),
    }
    return _choice(rng, _TWO_OBJECT_TEMPLATES).format(**fields)


class ObjectSpec(TypedDict):
    """What a caption states about one object; ``None`` where it says nothing."""

    color: str
    shape: str
    size: str | None
    position: str | None
    relation: str | None  # relation of this object to the next one (first object only)


def _alternation(phrases: list[str]) -> str:
    # Longest first, so "at the top left" wins over its prefix "at the top".
    return "|".join(re.escape(p) for p in sorted(phrases, key=len, reverse=True))


_NOUN_PHRASE_RE = re.compile(
    rf"\b(?:({'|'.join(SIZES)}) )?({'|'.join(COLORS)}) ({'|'.join(SHAPES)})\b"
)
_POSITION_OF = {p: k for k, ps in _POSITION_PHRASES.items() for p in ps}
_RELATION_OF = {p: k for k, ps in _RELATION_PHRASES.items() for p in ps}
_POSITION_RE = re.compile(rf"\b({_alternation(list(_POSITION_OF))})\b")
_RELATION_RE = re.compile(rf"\b({_alternation(list(_RELATION_OF))})\b")


def parse_caption(prompt: str) -> list[ObjectSpec]:
    """The objects a caption describes, in order: the inverse of ``caption``.

    Each noun phrase's position and relation are read from the text between it and the next noun
    phrase, which is where every template places them.
    """
    text = prompt.lower()
    matches = list(_NOUN_PHRASE_RE.finditer(text))
    specs: list[ObjectSpec] = []
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        tail = text[match.end() : end]
        position = _POSITION_RE.search(tail)
        relation = _RELATION_RE.search(tail) if i + 1 < len(matches) else None
        specs.append(
            ObjectSpec(
                color=match.group(2),
                shape=match.group(3),
                size=match.group(1),
                position=_POSITION_OF[position.group(1)] if position else None,
                relation=_RELATION_OF[relation.group(1)] if relation else None,
            )
        )
    return specs


def _vocabulary() -> list[str]:
    texts = [
        *_ONE_OBJECT_TEMPLATES,
        *_TWO_OBJECT_TEMPLATES,
        *_BACKGROUND_TEMPLATES,
        *_POSITION_OF,
        *_RELATION_OF,
        *COLORS,
        *BACKGROUND_COLORS,
        *SHAPES,
        *SIZES,
    ]
    return sorted({w for t in texts for w in re.sub(r"\{\w*\}", " ", t).split()})


VOCABULARY: list[str] = _vocabulary()


# ----------------------------------------------------------------------------- dataset

SPLITS = ("train", "heldout")
DEFAULT_LENGTH = 1 << 20  # an "epoch"; any non-negative index is valid whatever the length


def sample_item(
    split: str,
    seed: int,
    index: int,
    num_objects: int | None = None,
    edit: Callable[[Scene], Scene] | None = None,
    size_omitted: float = SIZE_OMITTED_PROBABILITY,
) -> tuple[Scene, str]:
    """The (scene, caption) at ``index`` of a split: a pure function of its arguments.

    ``edit``: caption ``edit(scene)`` instead, with the same template and wording draws, so that
    the caption differs from the true one only where the edit changed the scene (counterfactual
    captions: :mod:`arcflow.tinyworld.caption_probe`). The returned scene is the true one.
    ``size_omitted``: see :func:`caption` (the scene does not depend on it).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    sample = sample_scene if split == "train" else sample_heldout_scene
    scene = sample(rng, num_objects)
    return scene, caption(scene if edit is None else edit(scene), rng, size_omitted)


def heldout_prompts(
    n: int, seed: int = 0, num_objects: int | None = None
) -> list[tuple[str, Scene]]:
    """``n`` held-out (prompt, scene) pairs, optionally all with ``num_objects`` objects."""
    items = (sample_item("heldout", seed, i, num_objects) for i in range(n))
    return [(prompt, scene) for scene, prompt in items]


class SceneDataset(Dataset):
    """Rendered scenes with captions: ``dict(image, prompt, targets, num_objects)``.

    ``image`` is (3, 64, 64) float32 in [-1, 1], ``targets`` the (NUM_POSITIONS, 3) int64 slot
    targets of ``Scene.slot_targets`` (fixed-size, so the default collate works). Items are a pure
    function of (split, seed, index); no shuffling is needed.
    """

    def __init__(
        self,
        split: Literal["train", "heldout"] = "train",
        seed: int = 0,
        length: int | None = None,
        image_size: int = IMAGE_SIZE,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.split = split
        self.seed = seed
        self.length = DEFAULT_LENGTH if length is None else length
        self.image_size = image_size

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str | int]:
        if index < 0:
            raise IndexError("scene indices are non-negative")
        scene, prompt = sample_item(self.split, self.seed, index)
        return {
            "image": image_to_tensor(render(scene, self.image_size)),
            "prompt": prompt,
            "targets": torch.from_numpy(scene.slot_targets()),
            "num_objects": len(scene.objects),
        }
