"""The tiny world's measures for the evaluation harness: caption match by stated size and shape,
and the evaluator's feature space."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from arcflow.evaluation.features import to_uint8
from arcflow.tinyworld.evaluator import AttributeEvaluator
from arcflow.tinyworld.scenes import Scene, SceneObject, render_batch
from arcflow.tinyworld.scoring import EvaluatorFeatures, SceneCaptionScorer

ROOT = Path(__file__).resolve().parents[2]


def test_caption_match_per_stated_size_and_shape():
    """Rendered scenes match their own captions under the shipped evaluator and a swapped one does
    not: the per-object table counts exactly that, by stated size and shape, leaving out unstated
    sizes and two-object prompts."""
    evaluator = AttributeEvaluator.from_pretrained(ROOT / "checkpoints" / "tiny-evaluator")

    def scene(*objects: tuple[str, str, str]) -> Scene:
        return Scene(
            tuple(SceneObject(c, shape, size, p) for c, shape, size, p in objects), ("gray",)
        )

    star, circle = ("red", "star", "large", "center"), ("blue", "circle", "large", "center")
    cases = [
        ("a large red star in the center", scene(star)),
        ("a large red star in the center", scene(("red", "circle", "large", "center"))),
        ("a small red star in the center", scene(("red", "star", "small", "center"))),
        ("a red star in the center", scene(star)),  # no size stated: not in the table
        ("a large blue circle in the center", scene(circle)),
        ("a large blue circle at the top left and a large red star in the center",
         scene(("blue", "circle", "large", "top left"), star)),
    ]  # fmt: skip
    images = to_uint8(render_batch([s for _, s in cases]))
    scores = SceneCaptionScorer(evaluator)(images, [p for p, _ in cases])
    assert scores.match_by_object == {
        "large circle": {"match": 1.0, "prompts": 1},
        "small star": {"match": 1.0, "prompts": 1},
        "large star": {"match": 0.5, "prompts": 2},
    }
    assert list(scores.match_by_object) == ["large circle", "small star", "large star"]
    assert scores.match == pytest.approx(5 / 6)


def test_evaluator_features_are_its_penultimate_activations():
    """The FID space: the evaluator's ``features`` of the images in [-1, 1], batch by batch."""
    torch.manual_seed(0)
    evaluator = AttributeEvaluator().eval()
    images = torch.randint(0, 256, (5, 3, 64, 64), dtype=torch.uint8)
    features = EvaluatorFeatures(evaluator, batch_size=2)(images)
    with torch.no_grad():
        expected = evaluator.features(images.float() / 127.5 - 1)
    assert features.shape[0] == 5
    torch.testing.assert_close(features, expected)
