"""The tiny world's training pieces: the VAE trainer, and scene latents cached once per VAE."""

from __future__ import annotations

import pytest
import torch
from tiny_models import fixed_loss, scene_batch, text_and_vae_stacks, train_steps
from torch.utils.data import default_collate

from arcflow.tinyworld.flow_matching import FlowMatchingTrainer
from arcflow.tinyworld.scene_latents import SceneLatentDataset, latent_object_mask
from arcflow.tinyworld.scenes import parse_caption, sample_item
from arcflow.tinyworld.vae_trainer import VAETrainer


@pytest.fixture(scope="module")
def stacks(tmp_path_factory) -> dict[str, str]:
    return text_and_vae_stacks(tmp_path_factory.mktemp("stacks"))


@pytest.mark.parametrize("arch", ["flux", "qwen_image"])
def test_vae_trainer_lowers_reconstruction_loss(arch):
    torch.manual_seed(0)
    model = VAETrainer(arch)
    batch = scene_batch(4)

    def loss() -> float:
        torch.manual_seed(1)
        with torch.no_grad():
            return float(sum(model.loss(batch).values()))

    before = loss()
    train_steps(model, batch, steps=6, lr=2e-3)
    assert loss() < 0.8 * before


@pytest.mark.parametrize("arch", ["flux", "qwen_image"])
def test_cached_scene_latents_give_the_image_loss(stacks, arch, tmp_path):
    """Pre-encoded latents are the codec's encoding of the rendered scenes, the cache is reused,
    and a teacher's loss on them equals its loss on the images (object weighting included: the
    cached ``loss_weight`` is the images' latent object mask, ``1 + W m``)."""
    dataset = SceneLatentDataset(stacks[arch], size=6, seed=0, cache_dir=str(tmp_path))
    written = dataset.path.stat().st_mtime_ns
    again = SceneLatentDataset(stacks[arch], size=6, seed=0, cache_dir=str(tmp_path))
    assert again.path == dataset.path and dataset.path.stat().st_mtime_ns == written
    assert len(list(tmp_path.iterdir())) == 1  # atomic write left no temporary file

    model = FlowMatchingTrainer(
        arch,
        dict(from_config="tiny"),
        stacks[arch],
        guidance_scale=1.0 if arch == "flux" else None,
    )
    weighted = SceneLatentDataset(
        stacks[arch], size=6, seed=0, cache_dir=str(tmp_path), object_weight=4.0
    )
    images = scene_batch(6)
    assert [dataset[i]["prompt"] for i in range(6)] == images["prompt"]
    latents = torch.stack([dataset[i]["latents"] for i in range(6)])
    torch.testing.assert_close(latents, model.encode(images["image"]), atol=1e-5, rtol=1e-5)
    cached = default_collate([weighted[i] for i in range(6)])
    mask = latent_object_mask(images["image"], latents.shape[-2:])
    assert 0 < mask.mean() < 0.5  # objects: a minority of each scene
    torch.testing.assert_close(cached["loss_weight"], 1.0 + 4.0 * mask)
    images["loss_weight"] = 1.0 + 4.0 * mask
    assert fixed_loss(model, cached) == pytest.approx(fixed_loss(model, images), rel=1e-5)


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
