"""The tiny world's measures for the evaluation harness: caption match read by the attribute
evaluator (a :class:`~arcflow.evaluation.harness.CaptionScorer`) and the evaluator's penultimate
features as the FID space (a :class:`~arcflow.evaluation.features.FeatureSpace`)."""

from __future__ import annotations

import torch

from arcflow.evaluation.features import to_signed
from arcflow.evaluation.harness import CaptionScores
from arcflow.tinyworld.evaluator import AttributeEvaluator
from arcflow.tinyworld.scenes import SHAPES, SIZES, parse_caption


class EvaluatorFeatures:
    """The attribute evaluator's penultimate features (the tiny world's FID space)."""

    name = "evaluator"

    def __init__(self, evaluator: AttributeEvaluator, batch_size: int = 256) -> None:
        self.evaluator = evaluator
        self.batch_size = batch_size

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` uint8 -> ``(N, D)`` float32 on the CPU."""
        device = next(self.evaluator.parameters()).device
        chunks = [
            self.evaluator.features(to_signed(chunk).to(device)).float().cpu()
            for chunk in images.split(self.batch_size)
        ]
        return torch.cat(chunks)


class SceneCaptionScorer:
    """Caption match of scene images: overall, per attribute, per object count, and per stated
    size and shape of the one-object prompts that state a size (where a teacher fails is often
    one kind of object: large stars, say)."""

    def __init__(self, evaluator: AttributeEvaluator) -> None:
        self.evaluator = evaluator

    def __call__(self, images: torch.Tensor, prompts: list[str]) -> CaptionScores:
        """``(N, 3, H, W)`` uint8 images of the ``N`` scene captions ``prompts``."""
        signed = to_signed(images)
        score = self.evaluator.score(signed, prompts)
        accuracy = dict(score.accuracy)
        specs = [parse_caption(p) for p in prompts]
        by_objects: dict[int, dict[str, float]] = {}
        images_by_objects: dict[int, int] = {}
        for n in sorted({len(s) for s in specs}):
            # Attribute accuracies average over stated attributes, so a count's own accuracies
            # need a score of its own images, not a slice of the overall one.
            index = [i for i, spec in enumerate(specs) if len(spec) == n]
            by_objects[n] = self.evaluator.score(
                signed[index], [prompts[i] for i in index]
            ).accuracy
            images_by_objects[n] = len(index)
        kinds: dict[tuple[str, str], list[bool]] = {}
        for spec, matched in zip(specs, score.match.tolist()):
            if len(spec) == 1 and spec[0]["size"] is not None:
                kinds.setdefault((spec[0]["shape"], spec[0]["size"]), []).append(matched)
        by_object = {
            f"{size} {shape}": {"match": sum(hits) / len(hits), "prompts": len(hits)}
            for (shape, size), hits in sorted(
                kinds.items(), key=lambda kind: (SHAPES.index(kind[0][0]), SIZES.index(kind[0][1]))
            )
        }
        return CaptionScores(
            accuracy.pop("match"), accuracy, by_objects, images_by_objects, by_object
        )
