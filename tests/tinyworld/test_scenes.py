import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from arcflow.data.image_latents import image_to_tensor, tensor_to_image
from arcflow.tinyworld.scenes import (
    COLORS,
    HELDOUT_COMBOS,
    IMAGE_SIZE,
    POSITIONS,
    SHAPES,
    SIZES,
    VOCABULARY,
    SceneDataset,
    SceneObject,
    heldout_prompts,
    parse_caption,
    relation_holds,
    render,
    sample_item,
)


@pytest.fixture(scope="module")
def items() -> list:
    return [sample_item(split, 0, i) for split in ("train", "heldout") for i in range(300)]


def test_dataset_is_deterministic_from_seed() -> None:
    a, b, other = SceneDataset("train", seed=7), SceneDataset("train", seed=7), SceneDataset(seed=8)
    for index in (0, 5, 123_456_789):
        assert a[index]["prompt"] == b[index]["prompt"]
        assert torch.equal(a[index]["image"], b[index]["image"])
    assert [a[i]["prompt"] for i in range(20)] != [other[i]["prompt"] for i in range(20)]


def test_size_omission_changes_only_size_words() -> None:
    """``size_omitted`` 0 states every object's size, 1 none; the scene and every other word of
    the caption are the default draw's."""
    sizes = set(SIZES)
    stated = omitted = 0
    for i in range(300):
        scene, default = sample_item("train", 0, i)
        always_scene, always = sample_item("train", 0, i, size_omitted=0.0)
        never_scene, never = sample_item("train", 0, i, size_omitted=1.0)
        assert scene == always_scene == never_scene
        assert [o.size for o in scene.objects] == [s["size"] for s in parse_caption(always)]
        assert all(spec["size"] is None for spec in parse_caption(never))
        words = [[w for w in text.split() if w not in sizes] for text in (default, always, never)]
        assert words[0] == words[1] == words[2]
        specs = parse_caption(default)
        stated += sum(spec["size"] is not None for spec in specs)
        omitted += sum(spec["size"] is None for spec in specs)
    assert 0.15 < omitted / (stated + omitted) < 0.35  # the default leaves about a quarter out


def test_dataset_items_collate() -> None:
    batch = next(iter(DataLoader(SceneDataset("heldout", seed=0, length=8), batch_size=4)))
    assert batch["image"].shape == (4, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert batch["image"].min() >= -1 and batch["image"].max() <= 1
    assert batch["targets"].shape == (4, len(POSITIONS), 3)
    assert len(batch["prompt"]) == 4
    assert ((batch["targets"][..., 0] >= 0).sum(1) == batch["num_objects"]).all()


def test_caption_parses_back_to_the_scene(items: list) -> None:
    for scene, prompt in items:
        specs = parse_caption(prompt)
        assert len(specs) == len(scene.objects), prompt
        for spec, obj in zip(specs, scene.objects):
            assert (spec["color"], spec["shape"]) == (obj.color, obj.shape), prompt
            assert spec["size"] in (None, obj.size), prompt
            assert spec["position"] in (None, obj.position), prompt
        if len(specs) == 2:
            first, second = (obj.position for obj in scene.objects)
            assert first != second
            relation = specs[0]["relation"]
            assert relation is not None or specs[0]["position"] is not None, prompt
            assert relation is None or relation_holds(relation, first, second), prompt


def test_parse_handwritten_captions() -> None:
    blue, yellow = parse_caption("a blue triangle below a small yellow square")
    assert blue == dict(color="blue", shape="triangle", size=None, position=None, relation="below")
    assert yellow == dict(
        color="yellow", shape="square", size="small", position=None, relation=None
    )
    (star,) = parse_caption("a small green star at the top on a gray and navy background")
    assert (star["position"], star["size"], star["relation"]) == ("top", "small", None)
    (circle,) = parse_caption("a large red circle in the top left corner")
    assert circle["position"] == "top left"


def test_rendered_objects_have_their_colour_in_their_cell(items: list) -> None:
    for scene, _ in items:
        image = render(scene)
        assert image.shape == (IMAGE_SIZE, IMAGE_SIZE, 3) and image.dtype == np.uint8
        for obj in scene.objects:
            x, y = (int(c) for c in obj.center())
            row, col = divmod(POSITIONS.index(obj.position), 3)
            assert (y * 3 // IMAGE_SIZE, x * 3 // IMAGE_SIZE) == (row, col)
            assert np.abs(image[y, x].astype(int) - obj.rgb()).max() <= 1


def test_every_shape_renders_distinctly() -> None:
    from arcflow.tinyworld.scenes import Scene

    masks = []
    for shape in SHAPES:
        obj = SceneObject(color="white", shape=shape, size="large", position="center")
        masks.append(render(Scene(objects=(obj,), background=("black",)))[..., 0] > 128)
    for i in range(len(masks)):
        for j in range(i):
            assert (masks[i] != masks[j]).sum() > 20, (SHAPES[i], SHAPES[j])


def test_heldout_split_is_disjoint_from_train(items: list) -> None:
    for scene, _ in items[:300]:
        assert all(obj.combo not in HELDOUT_COMBOS for obj in scene.objects)
    for scene, _ in items[300:]:
        assert any(obj.combo in HELDOUT_COMBOS for obj in scene.objects)
    # Two reserved combinations per (colour, shape) pair: every attribute still trains.
    pairs = [(c, s) for c, s, _, _ in HELDOUT_COMBOS]
    assert len(HELDOUT_COMBOS) == 2 * len(COLORS) * len(SHAPES) == len(pairs)
    assert all(pairs.count((c, s)) == 2 for c in COLORS for s in SHAPES)


def test_heldout_prompts() -> None:
    pairs = heldout_prompts(10, seed=3, num_objects=2)
    assert pairs == heldout_prompts(10, seed=3, num_objects=2)
    assert all(len(scene.objects) == 2 == len(parse_caption(p)) for p, scene in pairs)


def test_vocabulary_covers_every_caption(items: list) -> None:
    assert VOCABULARY == sorted(set(VOCABULARY))
    words = {w for _, prompt in items for w in prompt.split()}
    assert words <= set(VOCABULARY)
    assert set(COLORS) | set(SHAPES) | set(SIZES) <= set(VOCABULARY)


def test_tensor_round_trip(items: list) -> None:
    image = render(items[0][0])
    tensor = image_to_tensor(image)
    assert tensor.shape == (3, IMAGE_SIZE, IMAGE_SIZE) and tensor.dtype == torch.float32
    assert np.array_equal(tensor_to_image(tensor), image)
