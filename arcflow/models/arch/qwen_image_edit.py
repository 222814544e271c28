"""Qwen-Image-Edit (``QwenImageTransformer2DModel``, ``QwenImageEditPipeline``): instruction
editing with Qwen-Image's transformer. The image to edit enters the sequence as a second image
after the noisy latent (its own entry of ``img_shapes``), and the transformer's output for it is
dropped, so the heads act on the noisy tokens only. The teacher's true CFG keeps each token's
guided velocity at the norm of its conditional prediction, as the stock edit pipelines do.

Conditioning: Qwen-Image's (``prompt_embeds``, masks, negatives) plus ``image_latents``
(B, C, H', W'), the image to edit encoded like the latents. The edit pipelines also show the
image to the Qwen2.5-VL text encoder; that prompt encoding is not part of this module yet, so
:meth:`QwenImageEditAdapter.encode_prompts` refuses, and the embeddings come from
``QwenImageEditPipeline.encode_prompt``.
"""

from __future__ import annotations

import torch

from arcflow.models.arch.base import Cond, require
from arcflow.models.arch.qwen_image import QwenImageAdapter


class QwenImageEditAdapter(QwenImageAdapter):
    """Qwen-Image-Edit: Qwen-Image's forward with the source image's patches in the sequence."""

    name = "qwen_image_edit"
    display_name = "Qwen-Image-Edit"
    family = "qwen_image"
    published_class_name = "ArcQwenImageEditTransformer2DModel"
    text_pipeline = "QwenImageEditPipeline"

    def encode_prompts(self, pipe, prompts, device, max_sequence_length, negative_prompt):
        raise NotImplementedError(
            "Qwen-Image-Edit encodes each prompt together with its source image (Qwen2.5-VL); "
            "this version does not: pass prompt_embeds from QwenImageEditPipeline.encode_prompt"
        )

    def _source(self, cond: Cond) -> torch.Tensor:
        source = require(
            cond,
            "image_latents",
            "Qwen-Image-Edit",
            "(B, C, H', W'): the latent of the image to edit",
        )
        batch = cond["prompt_embeds"].shape[0] if "prompt_embeds" in cond else source.shape[0]
        if source.ndim != 4 or source.shape[0] != batch:
            raise ValueError(
                f"image_latents {tuple(source.shape)} must be (B, C, H', W') with the prompts' "
                f"batch {batch}"
            )
        return source

    def _guide(self, positive: torch.Tensor, negative: torch.Tensor, scale: float) -> torch.Tensor:
        guided = super()._guide(positive, negative, scale)
        # Per token, the guided velocity keeps the conditional prediction's length.
        return guided * (positive.norm(dim=-1, keepdim=True) / guided.norm(dim=-1, keepdim=True))
