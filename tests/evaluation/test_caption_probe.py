"""The caption probe: counterfactual captions change exactly one attribute, and the loss gaps are
zero for a model blind to the caption and not for one that reads it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from arcflow.data.scenes import parse_caption, sample_item
from arcflow.data.tiny_stack import ASSEMBLERS, build_vae, transformer_config
from arcflow.evaluation.caption_probe import (
    ATTRIBUTE_VALUES,
    VARIANTS,
    edit_attribute,
    probe_captions,
    probe_prompts,
)
from arcflow.models.flow_matching import FlowMatchingTrainer


@pytest.mark.parametrize("attribute", list(ATTRIBUTE_VALUES))
def test_edit_changes_one_attribute_of_the_first_object(attribute):
    rng = np.random.default_rng(0)
    for i in range(40):
        scene, _ = sample_item("heldout", 0, i, num_objects=2)
        edited = edit_attribute(scene, attribute, rng)
        first, new = scene.objects[0], edited.objects[0]
        assert getattr(new, attribute) != getattr(first, attribute)
        assert getattr(new, attribute) in ATTRIBUTE_VALUES[attribute]
        assert dataclasses.replace(new, **{attribute: getattr(first, attribute)}) == first
        assert edited.objects[1:] == scene.objects[1:] and edited.background == scene.background
        assert len({obj.position for obj in edited.objects}) == 2  # cells stay distinct
    with pytest.raises(ValueError, match="attribute must be one of"):
        edit_attribute(scene, "texture", rng)


def test_counterfactual_captions_state_the_edit_and_nothing_else():
    n = 40
    prompts = probe_prompts(n, seed=3)
    assert set(prompts) == set(VARIANTS) - {"empty"}
    for attribute in ATTRIBUTE_VALUES:
        changed = 0
        for true, edited in zip(prompts["true"], prompts[attribute]):
            (before,), (after,) = parse_caption(true), parse_caption(edited)
            if true == edited:
                # Only a size edit can leave the sentence as it was: when it omits the size.
                assert attribute == "size" and before["size"] is None
                continue
            changed += 1
            assert after[attribute] != before[attribute]
            assert {k: v for k, v in after.items() if k != attribute} == {
                k: v for k, v in before.items() if k != attribute
            }
        assert changed >= (n // 2 if attribute == "size" else n)
    assert prompts["other_caption"] == prompts["true"][1:] + prompts["true"][:1]


@pytest.fixture(scope="module")
def trainer(tmp_path_factory) -> FlowMatchingTrainer:
    torch.manual_seed(0)
    stack = ASSEMBLERS["flux"](tmp_path_factory.mktemp("probe") / "flux", vae=build_vae("flux"))
    model = FlowMatchingTrainer(
        "flux", dict(from_config=transformer_config("flux")), str(stack), guidance_scale=1.0
    )
    return model.eval()


def test_gaps_vanish_for_a_caption_blind_model_and_not_otherwise(trainer):
    sigmas = (0.5, 0.9)
    reading = probe_captions(trainer, n=6, sigmas=sigmas, batch_size=4)
    for sigma in sigmas:
        assert reading[sigma]["true"]["gap"] == 0.0 and reading[sigma]["true"]["count"] == 6
        for variant in ("color", "shape", "position", "other_caption", "empty"):
            assert reading[sigma][variant]["count"] == 6
            assert abs(reading[sigma][variant]["gap"]) > 1e-6, variant
    # Text reaches a FLUX transformer through the T5 token projection and the pooled CLIP vector:
    # without their weights every caption gives the same velocity.
    transformer = trainer.transformer
    with torch.no_grad():
        transformer.context_embedder.weight.zero_()
        transformer.time_text_embed.text_embedder.linear_1.weight.zero_()
    blind = probe_captions(trainer, n=6, sigmas=sigmas, batch_size=4)
    for sigma in sigmas:
        assert blind[sigma]["true"]["loss"] > 0
        for variant in VARIANTS:
            assert blind[sigma][variant]["gap"] == pytest.approx(0.0, abs=1e-9), variant
