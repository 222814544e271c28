"""The tiny world's trainers: flow matching (data and guidance-distillation targets) and VAEs."""

from __future__ import annotations

import pytest
import torch
from mmengine.optim import OptimWrapper
from torch.utils.data import default_collate

from arcflow.data.scene_latents import SceneLatentDataset
from arcflow.data.scenes import SceneDataset, parse_caption, sample_item
from arcflow.data.tiny_stack import (
    ASSEMBLERS,
    LATENT_CHANNELS,
    build_vae,
    transformer_config,
)
from arcflow.models.flow_matching import FlowMatchingTrainer, VAETrainer, sample_sigmas
from arcflow.models.loading import build_transformer


def _batch(size: int = 4) -> dict:
    items = [SceneDataset("train", seed=0)[i] for i in range(size)]
    return {
        "image": torch.stack([item["image"] for item in items]),
        "prompt": [item["prompt"] for item in items],
    }


@pytest.fixture(scope="module")
def stacks(tmp_path_factory) -> dict[str, str]:
    """Tiny stacks with random VAEs and the real text side (no transformer yet)."""
    root = tmp_path_factory.mktemp("stacks")
    torch.manual_seed(0)
    return {
        arch: str(ASSEMBLERS[arch](root / arch, vae=build_vae(arch)))
        for arch in ("flux", "qwen_image")
    }


def _fixed_loss(model: FlowMatchingTrainer, batch: dict) -> float:
    torch.manual_seed(123)  # same sigmas, noise and dropout for every evaluation
    with torch.no_grad():
        return float(model.loss(batch)["loss"])


def _steps(model, batch: dict, steps: int, lr: float) -> None:
    params = [p for p in model.parameters() if p.requires_grad]
    wrapper = OptimWrapper(torch.optim.Adam(params, lr=lr))
    for _ in range(steps):
        torch.manual_seed(123)
        model.train_step(batch, wrapper)


def test_sigma_sampling_and_shift():
    torch.manual_seed(0)
    sigma = sample_sigmas(10_000, "logit_normal")
    assert 0 < sigma.min() and sigma.max() < 1 and abs(sigma.median() - 0.5) < 0.03
    generator = torch.Generator().manual_seed(0)
    shifted = sample_sigmas(10_000, "uniform", shift=3.0, generator=generator)
    plain = torch.rand(10_000, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(shifted, 3 * plain / (1 + 2 * plain))


@pytest.mark.parametrize("arch", ["flux", "qwen_image"])
def test_flow_matching_lowers_loss_on_a_fixed_batch(stacks, arch):
    model = FlowMatchingTrainer(
        arch,
        dict(from_config=transformer_config(arch)),
        stacks[arch],
        text_dropout=0.5,
        guidance_scale=1.0 if arch == "flux" else None,
        object_weight=4.0 if arch == "flux" else 0.0,  # both losses
    )
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("transformer.") for n in trainable)
    batch = _batch()
    before = _fixed_loss(model, batch)
    _steps(model, batch, steps=8, lr=2e-3)
    assert _fixed_loss(model, batch) < 0.8 * before


def test_guidance_distillation_target(stacks, tmp_path):
    """Stage B regresses the frozen model's CFG velocity; at g = 1 it is the conditional one."""
    torch.manual_seed(0)
    stage_a = build_transformer("flux", transformer_config("flux"), device="cpu")
    stage_a.save_pretrained(tmp_path / "transformer")
    source = dict(from_pretrained=str(tmp_path), subfolder="transformer")
    model = FlowMatchingTrainer(
        "flux", source, stacks["flux"], cfg_teacher=dict(transformer=source, guidance_scale=1.0)
    )
    batch = _batch(2)
    encoded = model.prompt_encoder(batch["prompt"])
    empty = model.empty_conditioning(encoded)
    x, sigma = torch.randn(2, LATENT_CHANNELS, 16, 16), torch.tensor([0.3, 0.8])
    with torch.no_grad():
        plain = model.arch.teacher_velocity(model.cfg_teacher, x, sigma, encoded, 1.0)
        torch.testing.assert_close(model.guided_target(x, sigma, encoded, empty, 1.0), plain)
        negative = {key: value.expand(2, *value.shape[1:]) for key, value in empty.items()}
        u_neg = model.arch.teacher_velocity(model.cfg_teacher, x, sigma, negative, 1.0)
        guided = model.guided_target(x, sigma, encoded, empty, 3.0)
        # One scale per sample: row i is the target at g_i, and the embedded guidance too.
        per_sample = model.guided_target(x, sigma, encoded, empty, torch.tensor([1.0, 3.0]))
        embedded = model.arch.teacher_velocity(
            model.transformer, x, sigma, encoded, torch.tensor([2.0, 5.0])
        )
        embedded_at = [
            model.arch.teacher_velocity(model.transformer, x, sigma, encoded, g) for g in (2.0, 5.0)
        ]
    torch.testing.assert_close(guided, u_neg + 3.0 * (plain - u_neg), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(per_sample[0], plain[0])
    torch.testing.assert_close(per_sample[1], guided[1])
    torch.testing.assert_close(embedded[0], embedded_at[0][0])
    torch.testing.assert_close(embedded[1], embedded_at[1][1])
    assert not torch.allclose(embedded_at[0][1], embedded_at[1][1])  # the guidance input acts
    for per_sample_draws in (False, True):
        model.guidance_per_sample = per_sample_draws
        _steps(model, batch, steps=1, lr=1e-3)
    assert not any(p.requires_grad for p in model.cfg_teacher.parameters())


@pytest.mark.parametrize("arch", ["flux", "qwen_image"])
def test_vae_trainer_lowers_reconstruction_loss(arch):
    torch.manual_seed(0)
    model = VAETrainer(arch)
    batch = _batch(4)

    def loss() -> float:
        torch.manual_seed(1)
        with torch.no_grad():
            return float(sum(model.loss(batch).values()))

    before = loss()
    _steps(model, batch, steps=6, lr=2e-3)
    assert loss() < 0.8 * before


@pytest.mark.parametrize("arch", ["flux", "qwen_image"])
def test_cached_scene_latents_give_the_image_loss(stacks, arch, tmp_path):
    """Pre-encoded latents are the codec's encoding of the rendered scenes, the cache is reused,
    and a teacher's loss on them equals its loss on the images (object weighting included)."""
    dataset = SceneLatentDataset(stacks[arch], size=6, seed=0, cache_dir=str(tmp_path))
    written = dataset.path.stat().st_mtime_ns
    again = SceneLatentDataset(stacks[arch], size=6, seed=0, cache_dir=str(tmp_path))
    assert again.path == dataset.path and dataset.path.stat().st_mtime_ns == written
    assert len(list(tmp_path.iterdir())) == 1  # atomic write left no temporary file

    model = FlowMatchingTrainer(
        arch,
        dict(from_config=transformer_config(arch)),
        stacks[arch],
        guidance_scale=1.0 if arch == "flux" else None,
        object_weight=4.0,
    )
    images = _batch(6)
    assert [dataset[i]["prompt"] for i in range(6)] == images["prompt"]
    latents = torch.stack([dataset[i]["latents"] for i in range(6)])
    torch.testing.assert_close(latents, model.encode(images["image"]), atol=1e-5, rtol=1e-5)
    cached = default_collate([again[i] for i in range(6)])
    assert cached["object_mask"].shape == (6, 1, *latents.shape[-2:])
    assert 0 < cached["object_mask"].mean() < 0.5  # objects: a minority of each scene
    assert _fixed_loss(model, cached) == pytest.approx(_fixed_loss(model, images), rel=1e-5)


def test_scene_latents_repeat_the_scenes_a_phrase_describes(stacks, tmp_path):
    """``repeat`` shows each scene with a matching object that many times (the largest factor of
    its objects), the others once, with the cached items unchanged; bad phrases are named."""
    plain = SceneLatentDataset(stacks["flux"], size=40, seed=0, cache_dir=str(tmp_path))
    repeat = {"large star": 3, "star": 2, "red": 2}
    view = SceneLatentDataset(
        stacks["flux"], size=40, seed=0, cache_dir=str(tmp_path), repeat=repeat
    )
    expected = []
    for i in range(40):
        scene, prompt = sample_item("train", 0, i)
        assert plain.prompts[i] == prompt  # the cache holds the scenes drawn again here
        factor = 1
        for obj in scene.objects:
            if obj.shape == "star":
                factor = max(factor, 3 if obj.size == "large" else 2)
            if obj.color == "red":
                factor = max(factor, 2)
        expected += [i] * factor
    assert view.index.tolist() == expected and len(view) == len(expected) > 40
    assert {expected.count(i) for i in range(40)} == {1, 2, 3}  # every case occurs in 40 scenes
    for position, i in enumerate(expected):
        assert view[position]["prompt"] == plain[i]["prompt"]
        assert torch.equal(view[position]["latents"], plain[i]["latents"])

    for bad, named in (({"huge star": 2}, "huge"), ({"star": 0}, "positive integer")):
        with pytest.raises(ValueError, match=named):
            SceneLatentDataset(stacks["flux"], size=40, seed=0, cache_dir=str(tmp_path), repeat=bad)


def test_scene_latents_can_state_every_size(stacks, tmp_path):
    """``size_omitted=0``: the cached latents with captions that state every object's size."""
    plain = SceneLatentDataset(stacks["flux"], size=40, seed=0, cache_dir=str(tmp_path))
    sized = SceneLatentDataset(
        stacks["flux"], size=40, seed=0, cache_dir=str(tmp_path), size_omitted=0.0
    )
    assert sized.path == plain.path  # one cache: latents do not depend on the captions
    assert sized.prompts != plain.prompts
    for i in range(40):
        scene, _ = sample_item("train", 0, i)
        assert [s["size"] for s in parse_caption(sized[i]["prompt"])] == [
            obj.size for obj in scene.objects
        ]
        assert torch.equal(sized[i]["latents"], plain[i]["latents"])
    with pytest.raises(ValueError, match="probability"):
        SceneLatentDataset(stacks["flux"], size=40, cache_dir=str(tmp_path), size_omitted=1.5)
