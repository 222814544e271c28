"""FLUX.1-dev (``FluxTransformer2DModel``): guidance-distilled, one forward a step.

Conditioning: ``prompt_embeds`` (B, L, joint_dim) from T5, ``pooled_prompt_embeds`` (B,
pooled_dim) from CLIP.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import FluxTransformer2DModel, ModelMixin

from arcflow.models.arch.base import (
    DUAL_STREAM_ATTENTION,
    ArchAdapter,
    Cond,
    as_velocity,
    require,
)
from arcflow.models.packing import PACK, flux_image_ids, pack_latents
from arcflow.released import RELEASED_GUIDANCE


class FluxAdapter(ArchAdapter):
    """FLUX.1-dev: guidance-distilled; the guidance scale is an input of teacher and student."""

    name = "flux"
    transformer_cls = FluxTransformer2DModel
    published_class_name = "ArcFluxTransformer2DModel"
    input_embedder = "x_embedder"
    growable_stacks = {
        "single_transformer_blocks": ("num_single_layers", ("proj_out",)),
        "transformer_blocks": (
            "num_layers",
            ("attn.to_out.0", "attn.to_add_out", "ff.net.2", "ff_context.net.2"),
        ),
    }
    published_arch_keys = (
        "num_layers",
        "num_single_layers",
        "attention_head_dim",
        "num_attention_heads",
        "joint_attention_dim",
        "pooled_projection_dim",
        "guidance_embeds",
        "axes_dims_rope",
    )
    full_config = {
        "patch_size": 1,
        "in_channels": 64,
        "num_layers": 19,
        "num_single_layers": 38,
        "attention_head_dim": 128,
        "num_attention_heads": 24,
        "joint_attention_dim": 4096,
        "pooled_projection_dim": 768,
        "guidance_embeds": True,
        "axes_dims_rope": (16, 56, 56),
    }

    vae = "AutoencoderKL"
    text_pipeline = "FluxPipeline"
    lora_patterns = (
        r"transformer_blocks\.\d+\.ff\.net\.(0\.proj|2)",
        r"transformer_blocks\.\d+\.ff_context\.net\.(0\.proj|2)",
        r"single_transformer_blocks\.\d+\.(proj_mlp|proj_out)",
        r"time_text_embed\.timestep_embedder\.linear_[12]",
    )
    # The single-stream blocks share q/k/v (their output is proj_out, a released target).
    attention_lora_patterns = (
        DUAL_STREAM_ATTENTION,
        r"single_transformer_blocks\.\d+\.attn\.to_[qkv]",
    )

    def default_guidance_scale(self, transformer: ModelMixin) -> float | None:
        return (
            RELEASED_GUIDANCE[self.family or self.name]
            if transformer.config.guidance_embeds
            else None
        )

    def prompt_token_counts(self, pipe: Any, prompts: list[str]) -> list[int]:
        # T5's ids, end-of-sequence token included (the CLIP prompt is always cut at 77).
        ids = pipe.tokenizer_2(prompts, padding=False, truncation=False).input_ids
        return [len(i) for i in ids]

    def encode_prompts(self, pipe, prompts, device, max_sequence_length, negative_prompt):
        embeds, pooled, _ = pipe.encode_prompt(
            prompts, prompts, device=device, max_sequence_length=max_sequence_length
        )
        return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}

    def random_cond(self, config, batch, lengths, embeds, mask):
        return {
            "prompt_embeds": embeds(batch, lengths[0], config.joint_attention_dim),
            "pooled_prompt_embeds": embeds(batch, config.pooled_projection_dim),
        }

    def _forward(
        self,
        transformer: ModelMixin,
        x: torch.Tensor,
        sigma: torch.Tensor,
        cond: Cond,
        guidance_scale: float | torch.Tensor | None,
    ) -> torch.Tensor:
        dtype = self.input_dtype(transformer)
        prompt = require(cond, "prompt_embeds", "FLUX", "(B, L, joint_attention_dim)")
        pooled = require(cond, "pooled_prompt_embeds", "FLUX", "(B, pooled_projection_dim)")
        height, width = x.shape[-2:]
        if transformer.config.guidance_embeds:
            if guidance_scale is None:
                raise ValueError("this FLUX base is guidance-distilled: it needs a guidance scale")
            # A scalar, or one scale per sample (B,) as guidance distillation draws them.
            guidance = torch.as_tensor(guidance_scale, dtype=torch.float32, device=sigma.device)
            guidance = guidance.expand(sigma.shape)
        elif guidance_scale is not None:
            raise ValueError(
                f"guidance_scale={guidance_scale} given but this FLUX base has no guidance "
                "embedding (guidance_embeds=False); pass guidance_scale=None"
            )
        else:
            guidance = None
        tokens, img_ids = self._image_inputs(x.to(dtype), cond)
        out = transformer(
            hidden_states=tokens,
            encoder_hidden_states=prompt.to(dtype),
            pooled_projections=pooled.to(dtype),
            timestep=sigma,
            img_ids=img_ids,
            txt_ids=torch.zeros(prompt.shape[1], 3, device=x.device),
            guidance=guidance,
            return_dict=False,
        )[0]
        # The noisy latent's tokens come first; any condition tokens after them pass through.
        return out[:, : (height // PACK) * (width // PACK)]

    def _image_inputs(self, x: torch.Tensor, cond: Cond) -> tuple[torch.Tensor, torch.Tensor]:
        """The image tokens of one forward and their position ids: the noisy latent's alone."""
        return pack_latents(x), flux_image_ids(*x.shape[-2:], x.device)

    def student_tokens(self, transformer, x, sigma, cond, guidance_scale):
        return self._forward(transformer, x, sigma, cond, guidance_scale)

    def teacher_velocity(self, transformer, x, sigma, cond, guidance_scale):
        tokens = self._forward(transformer, x, sigma, cond, guidance_scale)
        return as_velocity(tokens, *x.shape[-2:])
