"""The caption probe: counterfactual captions change exactly one attribute, and the loss gaps are
zero for a model blind to the caption and not for one that reads it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from arcflow.tinyworld.architectures import FLUX_GUIDANCE_SCALE
from arcflow.tinyworld.caption_probe import (
    ATTRIBUTE_VALUES,
    VARIANTS,
    GuidedTeacher,
    edit_attribute,
    probe_captions,
    probe_prompts,
    renoise_probe,
)
from arcflow.tinyworld.evaluator import AttributeEvaluator
from arcflow.tinyworld.flow_matching import FlowMatchingTrainer
from arcflow.tinyworld.scenes import parse_caption, render_batch, sample_item
from arcflow.tinyworld.stack import ASSEMBLERS, build_vae


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
    model = FlowMatchingTrainer("flux", dict(from_config="tiny"), str(stack), guidance_scale=1.0)
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


# ------------------------------------------------------------------ re-noised samples
SHIPPED_FLUX = Path(__file__).resolve().parents[2] / "checkpoints" / "tiny-flux"
SHIPPED_EVALUATOR = SHIPPED_FLUX.parent / "tiny-evaluator"


class _ImageKeeper(GuidedTeacher):
    """The exact velocity of data concentrated at the scenes' own latents,
    ``u = (x - x0) / sigma``: whatever the caption, every sample is the VAE's reconstruction."""

    x0: torch.Tensor

    def teacher_velocity(self, x, sigma, cond):
        return (x - self.x0) / sigma.view(-1, 1, 1, 1).to(x)


@pytest.fixture(scope="module")
def shipped_flux() -> FlowMatchingTrainer:
    model = FlowMatchingTrainer(
        "flux",
        dict(from_pretrained=str(SHIPPED_FLUX), subfolder="transformer"),
        str(SHIPPED_FLUX),
        max_sequence_length=32,
        guidance_scale=FLUX_GUIDANCE_SCALE,
    )
    return model.eval()


def test_renoise_probe_of_a_teacher_that_keeps_the_image(shipped_flux):
    n = 12
    evaluator = AttributeEvaluator.from_pretrained(SHIPPED_EVALUATOR)
    keeper = _ImageKeeper(shipped_flux)
    scenes = [sample_item("heldout", 0, i, 1)[0] for i in range(n)]
    keeper.x0 = shipped_flux.encode(render_batch(scenes))
    results = renoise_probe(keeper, evaluator, n=n, sigmas=(0.6,), steps=8, batch_size=n)[0.6]
    reconstructions = shipped_flux.codec.decode(keeper.x0).float().clamp(-1, 1)
    expected = evaluator.score(reconstructions, probe_prompts(n)["true"]).accuracy
    assert results["true"] == pytest.approx(expected, abs=1e-6)
    # Colour and position are the attributes the evaluator reads surely on reconstructions:
    # an image-keeping sampler shows the scene's value, never the edited caption's.
    for attribute in ("color", "position"):
        assert results[attribute]["image"] >= 0.9
        assert results[attribute]["caption"] <= 0.1


def test_shipped_teacher_takes_colour_from_the_caption_only_at_high_noise(shipped_flux):
    evaluator = AttributeEvaluator.from_pretrained(SHIPPED_EVALUATOR)
    teacher = GuidedTeacher(shipped_flux)
    results = renoise_probe(teacher, evaluator, n=8, sigmas=(0.97, 0.15), steps=30, batch_size=8)
    assert results[0.97]["color"]["caption"] >= 0.75
    assert results[0.15]["color"]["image"] >= 0.75


def test_guided_teacher_is_true_cfg_with_the_empty_prompt(shipped_flux):
    x = torch.randn(2, 16, 16, 16, generator=torch.Generator().manual_seed(0))
    sigma = torch.full((2,), 0.6)
    cond = shipped_flux.conditioning(["a red circle at the top", "a blue star on the left"])
    with torch.no_grad():
        u_pos = shipped_flux.velocity(x, sigma, cond)
        u_neg = shipped_flux.velocity(x, sigma, shipped_flux.conditioning(["", ""]))
        for scale, expected in ((None, u_pos), (1.0, u_pos), (0.0, u_neg)):
            u = GuidedTeacher(shipped_flux, scale).teacher_velocity(x, sigma, cond)
            torch.testing.assert_close(u, expected, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(u_pos, u_neg, atol=1e-4)
