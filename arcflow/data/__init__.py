"""Prompt datasets and the tiny world's procedural captioned scenes."""

from arcflow.data.scenes import (
    HELDOUT_COMBOS,
    VOCABULARY,
    Scene,
    SceneDataset,
    SceneObject,
    caption,
    heldout_prompts,
    image_to_tensor,
    parse_caption,
    render,
    render_batch,
    sample_scene,
    tensor_to_image,
)

__all__ = [
    "HELDOUT_COMBOS",
    "VOCABULARY",
    "Scene",
    "SceneDataset",
    "SceneObject",
    "caption",
    "heldout_prompts",
    "image_to_tensor",
    "parse_caption",
    "render",
    "render_batch",
    "sample_scene",
    "tensor_to_image",
]
