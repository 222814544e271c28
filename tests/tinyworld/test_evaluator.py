from pathlib import Path

import pytest
import torch

from arcflow.tinyworld.evaluator import (
    WEIGHTS_NAME,
    AttributeEvaluator,
    SlotPrediction,
    degrade,
)
from arcflow.tinyworld.scenes import heldout_prompts, render_batch

CHECKPOINT = Path(__file__).resolve().parents[2] / "checkpoints" / "tiny-evaluator"


@pytest.fixture(scope="module")
def evaluator() -> AttributeEvaluator:
    return AttributeEvaluator.from_pretrained(CHECKPOINT)


@pytest.fixture(scope="module")
def heldout() -> tuple[list[str], torch.Tensor]:
    # A seed the training script never evaluates on, so this sample is fresh.
    prompts, scenes = zip(*heldout_prompts(200, seed=2024))
    return list(prompts), render_batch(list(scenes))


def test_shipped_evaluator_reads_heldout_scenes(evaluator, heldout) -> None:
    prompts, images = heldout
    assert evaluator.score(images, prompts).accuracy["match"] >= 0.95
    assert evaluator.score(degrade(images), prompts).accuracy["match"] >= 0.9


def test_shipped_weights_are_small() -> None:
    assert (CHECKPOINT / WEIGHTS_NAME).stat().st_size < 2 * 2**20


def test_features_shape(evaluator, heldout) -> None:
    _, images = heldout
    features = evaluator.features(images[:5])
    assert features.shape == (5, evaluator.config.feature_dim)


def _oracle(monkeypatch, model: AttributeEvaluator, scenes: list) -> None:
    targets = torch.stack([torch.from_numpy(s.slot_targets()) for s in scenes])
    truth = SlotPrediction(
        present=targets[..., 0] >= 0,
        color=targets[..., 0].clamp(min=0),
        shape=targets[..., 1].clamp(min=0),
        size=targets[..., 2].clamp(min=0),
    )
    monkeypatch.setattr(model, "predict", lambda images: truth)


def test_score_matches_true_captions_and_rejects_wrong_ones(monkeypatch) -> None:
    pairs = heldout_prompts(40, seed=1)
    prompts, scenes = (list(x) for x in zip(*pairs))
    model = AttributeEvaluator()
    _oracle(monkeypatch, model, scenes)
    images = torch.zeros(len(scenes), 3, 64, 64)
    score = model.score(images, prompts)
    assert score.match.all() and all(v == 1.0 for v in score.accuracy.values())
    # The same images under someone else's caption mostly do not match.
    wrong = model.score(images, prompts[1:] + prompts[:1])
    assert wrong.accuracy["match"] < 0.2


def test_score_checks_relations(monkeypatch) -> None:
    prompts, scenes = zip(*heldout_prompts(200, seed=5, num_objects=2))
    model = AttributeEvaluator()
    _oracle(monkeypatch, model, list(scenes))
    index, prompt = next((i, p) for i, p in enumerate(prompts) if " above " in p)
    score = model.score(torch.zeros(len(scenes), 3, 64, 64), list(prompts))
    assert score.match[index]
    bad = list(prompts)
    bad[index] = prompt.replace(" above ", " below ")
    score = model.score(torch.zeros(len(scenes), 3, 64, 64), bad)
    assert not score.match[index] and score.accuracy["position"] < 1.0


def test_save_and_load_round_trip(tmp_path, heldout) -> None:
    _, images = heldout
    model = AttributeEvaluator().eval()
    model.save_pretrained(tmp_path)
    loaded = AttributeEvaluator.from_pretrained(tmp_path)
    torch.testing.assert_close(loaded.features(images[:4]), model.features(images[:4]))
