"""FLUX.1 Kontext (``FluxTransformer2DModel``, ``FluxKontextPipeline``): instruction editing with
the same transformer as FLUX.1-dev. The image to edit enters as extra tokens after the noisy
latent's: packed like it, with position ids whose first coordinate is 1 instead of 0. The
transformer's output for them is dropped, so the heads (teacher projection or ArcFlow heads) act
on the noisy tokens only and the condition tokens pass through.

Conditioning: FLUX's ``prompt_embeds`` and ``pooled_prompt_embeds``, plus ``image_latents``
(B, C, H', W'): the image to edit encoded by the VAE, shifted and scaled like the latents
(:class:`~arcflow.models.vae.LatentCodec`). Its size may differ from the generated image's.
"""

from __future__ import annotations

import torch
from diffusers import ModelMixin

from arcflow.models.arch.base import Cond, require
from arcflow.models.arch.flux import FluxAdapter
from arcflow.models.packing import flux_image_ids, pack_latents

# Kontext [dev]'s recommended embedded guidance (its model card; the stock pipeline's default is
# FLUX.1-dev's 3.5).
KONTEXT_GUIDANCE = 2.5


class FluxKontextAdapter(FluxAdapter):
    """FLUX.1 Kontext: FLUX.1-dev's forward with the source image's tokens in the sequence."""

    name = "flux_kontext"
    family = "flux"
    published_class_name = "ArcFluxKontextTransformer2DModel"
    text_pipeline = "FluxKontextPipeline"

    def default_guidance_scale(self, transformer: ModelMixin) -> float | None:
        return KONTEXT_GUIDANCE if transformer.config.guidance_embeds else None

    def _image_inputs(self, x: torch.Tensor, cond: Cond) -> tuple[torch.Tensor, torch.Tensor]:
        source = require(
            cond,
            "image_latents",
            "FLUX.1 Kontext",
            "(B, C, H', W'): the latent of the image to edit",
        )
        if source.shape[:2] != x.shape[:2]:
            raise ValueError(
                f"image_latents {tuple(source.shape)} must be batched and have channels like the "
                f"latents {tuple(x.shape)}"
            )
        tokens, ids = super()._image_inputs(x, cond)
        source_ids = flux_image_ids(*source.shape[-2:], x.device)
        source_ids[:, 0] = 1  # the condition image's tokens: same grid, first coordinate 1
        return (
            torch.cat([tokens, pack_latents(source.to(x.dtype))], dim=1),
            torch.cat([ids, source_ids]),
        )
