"""Qwen-Image (``QwenImageTransformer2DModel``; Qwen-Image-2512 is the same class): the teacher
uses true CFG ``u_neg + s (u_pos - u_neg)``, the student runs once, on the positive prompt only.

Conditioning: ``prompt_embeds`` (B, L, D), optional ``prompt_embeds_mask`` (B, L) (1 = token); for
the teacher's true CFG also ``negative_prompt_embeds`` (B or 1, L', D) and optional
``negative_prompt_embeds_mask`` (B or 1, L'); a batch of 1 is shared by all samples.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from diffusers import (
    ModelMixin,
    QwenImageTransformer2DModel,
)
from torch import nn

from arcflow.models.arch.base import DUAL_STREAM_ATTENTION, ArchAdapter, require
from arcflow.models.packing import PACK, pack_latents
from arcflow.released import RELEASED_GUIDANCE

_TEXT_ONLY = re.compile(r"transformer_blocks\.(\d+)\.(txt_mlp\..*|attn\.(add_q_proj|to_add_out))")


class QwenImageAdapter(ArchAdapter):
    """Qwen-Image: the teacher uses true CFG ``u_neg + s (u_pos - u_neg)``; the student runs once,
    on the positive prompt only."""

    name = "qwen_image"
    display_name = "Qwen-Image"
    transformer_cls = QwenImageTransformer2DModel
    published_class_name = "ArcQwenImageTransformer2DModel"
    input_embedder = "img_in"
    growable_stacks = {
        "transformer_blocks": (
            "num_layers",
            ("attn.to_out.0", "attn.to_add_out", "img_mlp.net.2", "txt_mlp.net.2"),
        ),
    }
    published_arch_keys = (
        "num_layers",
        "attention_head_dim",
        "num_attention_heads",
        "joint_attention_dim",
        "axes_dims_rope",
    )
    full_config = {
        "patch_size": 2,
        "in_channels": 64,
        "out_channels": 16,
        "num_layers": 60,
        "attention_head_dim": 128,
        "num_attention_heads": 24,
        "joint_attention_dim": 3584,
        "axes_dims_rope": (16, 56, 56),
    }

    vae = "AutoencoderKLQwenImage"
    text_pipeline = "QwenImagePipeline"
    true_cfg = True
    lora_patterns = (
        r"transformer_blocks\.\d+\.img_mlp\.net\.(0\.proj|2)",
        r"transformer_blocks\.\d+\.txt_mlp\.net\.(0\.proj|2)",
        r"time_text_embed\.timestep_embedder\.linear_[12]",
    )
    attention_lora_patterns = (DUAL_STREAM_ATTENTION,)

    def feeds_nothing(self, name: str, transformer: nn.Module) -> bool:
        # Only the last block's image stream reaches norm_out: what computes its text-token
        # outputs (text queries, text output projection, text MLP) feeds nothing.
        text_only = _TEXT_ONLY.fullmatch(name)
        return (
            bool(text_only) and int(text_only.group(1)) == len(transformer.transformer_blocks) - 1
        )

    def check_transformer(self, transformer: nn.Module) -> None:
        super().check_transformer(transformer)
        if transformer.config.patch_size != PACK:
            raise ValueError(
                f"Qwen-Image tokens are 2x2 latent patches; got patch_size="
                f"{transformer.config.patch_size}"
            )

    def default_guidance_scale(self, transformer: ModelMixin) -> float | None:
        return RELEASED_GUIDANCE[self.family or self.name]

    def prompt_token_counts(self, pipe: Any, prompts: list[str]) -> list[int]:
        # The templated prompt, less the template's prefix that the pipeline drops.
        texts = [pipe.prompt_template_encode.format(p) for p in prompts]
        ids = pipe.tokenizer(texts, padding=False, truncation=False).input_ids
        return [len(i) - pipe.prompt_template_encode_start_idx for i in ids]

    def prompt_token_limit(self, pipe: Any, max_sequence_length: int) -> int:
        return min(max_sequence_length, pipe.tokenizer_max_length)

    def encode_prompts(self, pipe, prompts, device, max_sequence_length, negative_prompt):
        # Positives and the negative in one call: padded to one length, so the CFG pair runs as
        # one batch.
        embeds, mask = pipe.encode_prompt(
            prompts + [negative_prompt] * len(prompts),
            device=device,
            max_sequence_length=max_sequence_length,
        )
        if mask is None:  # the pipeline drops a mask that is all ones
            mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
        positive, negative = embeds.chunk(2)
        positive_mask, negative_mask = mask.chunk(2)
        return {
            "prompt_embeds": positive,
            "prompt_embeds_mask": positive_mask,
            "negative_prompt_embeds": negative,
            "negative_prompt_embeds_mask": negative_mask,
        }

    def random_cond(self, config, batch, lengths, embeds, mask):
        length, negative_length = lengths
        return {
            "prompt_embeds": embeds(batch, length, config.joint_attention_dim),
            "prompt_embeds_mask": mask(length),
            "negative_prompt_embeds": embeds(batch, negative_length, config.joint_attention_dim),
            "negative_prompt_embeds_mask": mask(negative_length),
        }

    def _forward(
        self,
        transformer: ModelMixin,
        x: torch.Tensor,
        sigma: torch.Tensor,
        prompt: torch.Tensor,
        mask: torch.Tensor | None,
        source: torch.Tensor | None = None,
    ) -> torch.Tensor:
        dtype = self.input_dtype(transformer)
        batch, _, height, width = x.shape
        # The pipeline's RoPE layout: one image of (frames=1, H/2, W/2) patches per sample, then
        # the condition image's patches.
        shapes = [(1, height // PACK, width // PACK)]
        tokens = pack_latents(x.to(dtype))
        if source is not None:
            shapes.append((1, source.shape[-2] // PACK, source.shape[-1] // PACK))
            tokens = torch.cat([tokens, pack_latents(source.to(dtype))], dim=1)
        out = transformer(
            hidden_states=tokens,
            encoder_hidden_states=prompt.to(dtype),
            encoder_hidden_states_mask=mask,
            timestep=sigma,
            img_shapes=[shapes] * batch,
            return_dict=False,
        )[0]
        # The noisy latent's tokens first; the condition image's outputs pass through.
        return out[:, : (height // PACK) * (width // PACK)]

    def student_tokens(self, transformer, x, sigma, cond, guidance_scale):
        prompt = require(cond, "prompt_embeds", self.display_name, "(B, L, joint_attention_dim)")
        mask = cond.get("prompt_embeds_mask")
        return self._forward(transformer, x, sigma, prompt, mask, self._source(cond))

    def teacher_velocity(self, transformer, x, sigma, cond, guidance_scale):
        return self.true_cfg_velocity(transformer, x, sigma, cond, guidance_scale)
