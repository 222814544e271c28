"""Attribute evaluator of the tiny world: does an image show what its caption says?

A small CNN reads, for each of the nine grid cells of ``arcflow.tinyworld.scenes.POSITIONS``,
whether it holds an object and that object's colour, shape and size. Two objects never share a
cell, so matching a caption is a search over at most 9 * 8 cell assignments. The penultimate
activations are the feature space of the FID-style metrics in this world.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from itertools import permutations
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from arcflow.tinyworld.scenes import (
    COLORS,
    POSITIONS,
    SHAPES,
    SIZES,
    ObjectSpec,
    parse_caption,
    relation_holds,
)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
ATTRIBUTES = ("color", "shape", "size", "position")


@dataclass(frozen=True)
class EvaluatorConfig:
    channels: tuple[int, ...] = (32, 48, 96, 64)
    feature_dim: int = 192
    image_size: int = 64
    # The world's names, stored so that a checkpoint and a changed world cannot silently disagree.
    colors: tuple[str, ...] = tuple(COLORS)
    shapes: tuple[str, ...] = SHAPES
    sizes: tuple[str, ...] = SIZES
    positions: tuple[str, ...] = POSITIONS


@dataclass
class SlotPrediction:
    """Per-cell reading of a batch; attribute indices are meaningful where ``present``."""

    present: torch.Tensor  # (N, P) bool
    color: torch.Tensor  # (N, P) int64
    shape: torch.Tensor  # (N, P) int64
    size: torch.Tensor  # (N, P) int64


@dataclass
class AttributeScore:
    match: torch.Tensor  # (N,) bool: the image shows exactly what its caption states
    accuracy: dict[str, float] = field(default_factory=dict)  # per attribute, count and match


def _conv(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class AttributeEvaluator(nn.Module):
    """(N, 3, 64, 64) images in [-1, 1] -> per-cell (presence, colour, shape, size) logits."""

    def __init__(self, config: EvaluatorConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or EvaluatorConfig()
        c1, c2, c3, c4 = config.channels
        # Stride 2 at every other layer: 64 -> 32 -> 16 -> 8 -> 4.
        self.backbone = nn.Sequential(
            _conv(3, c1, 2),
            _conv(c1, c1, 1),
            _conv(c1, c2, 2),
            _conv(c2, c2, 1),
            _conv(c2, c3, 2),
            _conv(c3, c3, 1),
            _conv(c3, c4, 2),
        )
        # Flattening (not pooling) keeps where things are, which the per-cell heads need.
        grid = config.image_size // 16
        self.embed = nn.Sequential(
            nn.Flatten(), nn.Linear(c4 * grid * grid, config.feature_dim), nn.ReLU(inplace=True)
        )
        self.split_sizes = (1, len(config.colors), len(config.shapes), len(config.sizes))
        self.head = nn.Linear(config.feature_dim, len(config.positions) * sum(self.split_sizes))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [-1, 1] -> (N, feature_dim) penultimate features."""
        return self.embed(self.backbone(images))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Logits (N, P) presence, (N, P, colours), (N, P, shapes), (N, P, sizes)."""
        logits = self.head(self.features(images)).view(
            images.shape[0], len(self.config.positions), -1
        )
        presence, color, shape, size = logits.split(self.split_sizes, dim=-1)
        return presence.squeeze(-1), color, shape, size

    def loss(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Presence BCE plus attribute cross-entropies on occupied cells.

        ``targets``: (N, P, 3) int64 (colour, shape, size) indices, -1 on empty cells.
        """
        presence, *attributes = self(images)
        occupied = targets[..., 0] >= 0
        total = F.binary_cross_entropy_with_logits(presence, occupied.float())
        for i, logits in enumerate(attributes):
            total = total + F.cross_entropy(logits[occupied], targets[..., i][occupied])
        return total

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 256) -> SlotPrediction:
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        outputs = [self(chunk.to(device).float()) for chunk in images.split(batch_size)]
        self.train(was_training)
        presence, color, shape, size = (torch.cat(parts).cpu() for parts in zip(*outputs))
        return SlotPrediction(
            present=presence > 0,
            color=color.argmax(-1),
            shape=shape.argmax(-1),
            size=size.argmax(-1),
        )

    @torch.no_grad()
    def score(self, images: torch.Tensor, prompts: list[str]) -> AttributeScore:
        """Caption match per image and accuracy per stated attribute over the batch.

        An image matches when it holds exactly as many objects as its caption names, each with the
        stated colour, shape, size and position (or relation to the other object). Attribute
        accuracies are read off the best assignment of detected objects to the named ones.
        """
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        prediction = self.predict(images)
        correct = dict.fromkeys((*ATTRIBUTES, "count"), 0)
        stated = dict.fromkeys((*ATTRIBUTES, "count"), 0)
        matches = []
        for i, prompt in enumerate(prompts):
            specs = parse_caption(prompt)
            detections = self._detections(prediction, i)
            checks = _best_assignment(specs, detections)
            count_ok = len(detections) == len(specs)
            for name, ok in [*checks, ("count", count_ok)]:
                stated[name] += 1
                correct[name] += int(ok)
            matches.append(count_ok and all(ok for _, ok in checks))
        match = torch.tensor(matches, dtype=torch.bool)
        accuracy = {k: correct[k] / stated[k] for k in stated if stated[k]}
        accuracy["match"] = match.float().mean().item()
        return AttributeScore(match=match, accuracy=accuracy)

    def _detections(self, prediction: SlotPrediction, i: int) -> dict[str, tuple[str, str, str]]:
        config = self.config
        return {
            config.positions[p]: (
                config.colors[prediction.color[i, p]],
                config.shapes[prediction.shape[i, p]],
                config.sizes[prediction.size[i, p]],
            )
            for p in range(len(config.positions))
            if prediction.present[i, p]
        }

    def save_pretrained(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_NAME).write_text(json.dumps(asdict(self.config), indent=2) + "\n")
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, directory / WEIGHTS_NAME)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> AttributeEvaluator:
        """Load an evaluator in eval mode; fails if it was trained on a different world."""
        directory = Path(directory)
        raw = json.loads((directory / CONFIG_NAME).read_text())
        config = EvaluatorConfig(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
        )
        world = EvaluatorConfig()
        names = ("colors", "shapes", "sizes", "positions")
        if any(getattr(config, n) != getattr(world, n) for n in names):
            raise ValueError(f"{directory} was trained on a different scene vocabulary")
        model = cls(config)
        model.load_state_dict(load_file(directory / WEIGHTS_NAME))
        return model.eval()


def _best_assignment(
    specs: list[ObjectSpec], detections: dict[str, tuple[str, str, str]]
) -> list[tuple[str, bool]]:
    """(attribute, correct) for every stated attribute, under the assignment of detected cells to
    named objects that gets the most of them right; a named object left without a detection gets
    every attribute wrong."""
    candidates: list[str | None] = [*detections, *[None] * len(specs)]
    best: list[tuple[str, bool]] = []
    best_correct = -1
    # dict.fromkeys drops the repeats of the None padding but keeps a deterministic order.
    for cells in dict.fromkeys(permutations(candidates, len(specs))):
        checks = _checks(specs, cells, detections)
        num_correct = sum(ok for _, ok in checks)
        if num_correct > best_correct:
            best, best_correct = checks, num_correct
    return best


def _checks(
    specs: list[ObjectSpec],
    cells: tuple[str | None, ...],
    detections: dict[str, tuple[str, str, str]],
) -> list[tuple[str, bool]]:
    checks = []
    for i, (spec, cell) in enumerate(zip(specs, cells)):
        color, shape, size = detections[cell] if cell is not None else (None, None, None)
        checks += [("color", color == spec["color"]), ("shape", shape == spec["shape"])]
        if spec["size"] is not None:
            checks.append(("size", size == spec["size"]))
        if spec["position"] is not None:
            checks.append(("position", cell == spec["position"]))
        if spec["relation"] is not None and i + 1 < len(specs):
            other = cells[i + 1]
            related = cell is not None and other is not None
            checks.append(("position", related and relation_holds(spec["relation"], cell, other)))
    return checks


def degrade(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random blur, noise and colour drift, each on about half the images, as generated images
    show; training on them keeps the evaluator from being brittle to a sampler's artefacts.

    (N, 3, H, W) in [-1, 1] -> same shape, clamped to [-1, 1].
    """
    n = images.shape[0]

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, *shape, generator=generator)

    def half() -> torch.Tensor:
        return (torch.rand(n, 1, 1, 1, generator=generator) < 0.5).float()

    # Per-image Gaussian blur: one separable kernel per image, applied as a grouped convolution.
    sigma = uniform(0.3, 1.2, 1) * half().view(n, 1) + 1e-3
    taps = torch.arange(-3, 4, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = (kernel / kernel.sum(-1, keepdim=True)).repeat_interleave(3, dim=0)  # (3N, 7)
    flat = images.reshape(1, n * 3, *images.shape[2:])
    flat = F.conv2d(
        F.pad(flat, (3, 3, 0, 0), mode="replicate"), kernel.view(-1, 1, 1, 7), groups=3 * n
    )
    flat = F.conv2d(
        F.pad(flat, (0, 0, 3, 3), mode="replicate"), kernel.view(-1, 1, 7, 1), groups=3 * n
    )
    out = flat.view_as(images)

    contrast = 1 + uniform(-0.1, 0.1, 1, 1, 1) * half()
    shift = uniform(-0.06, 0.06, 3, 1, 1) * half()
    noise = uniform(0.0, 0.12, 1, 1, 1) * half()
    out = out * contrast + shift + noise * torch.randn(out.shape, generator=generator)
    return out.clamp(-1.0, 1.0)
