"""FLUX.2 [klein] base (``Flux2Transformer2DModel``, ``Flux2KleinPipeline``): the undistilled klein
models (4B, 9B), whose teacher runs true CFG with the empty negative prompt, one forward each. The
step-distilled klein checkpoints are already few-step models and the guidance-embedded FLUX.2
[dev] is another kind of teacher: neither is a base here.

Conditioning: ``prompt_embeds`` (B, L, joint_dim) (three hidden layers of Qwen3, stacked) and, for
the teacher's true CFG, ``negative_prompt_embeds`` (B or 1, L', joint_dim). No mask: the pipeline
pads every prompt to its text length and the transformer reads the padding as it was trained to.

Positions are 4-axis (t, h, w, l): image tokens (0, row, col, 0), text tokens (0, 0, 0, index), as
``Flux2KleinPipeline`` builds them. Latents are FLUX.2's 32-channel VAE latents after its batch
normalisation, packed 2 x 2 into the 128 features of a token.

LoRA targets (chosen here: no ArcFlow student of FLUX.2 is published): the MLPs of the
dual-stream blocks (image and text), the single-stream blocks' fused output projection
(attention and MLP outputs in one layer) and the timestep embedder, as FLUX.1-dev's released
students adapt MLPs and outputs. The single-stream blocks' fused input projection also computes
q/k/v, so it joins with ``lora_attention=True``.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import (
    Flux2Transformer2DModel,
    ModelMixin,
)
from torch import nn

from arcflow.models.arch.base import DUAL_STREAM_ATTENTION, ArchAdapter, require
from arcflow.models.packing import PACK, pack_latents

KLEIN_GUIDANCE = 4.0  # Flux2KleinPipeline's default true-CFG scale for the base models


def flux2_image_ids(height: int, width: int, device: torch.device | str) -> torch.Tensor:
    """``(N, 4)`` int64 position ids (0, row, col, 0) of the packed tokens of a latent."""
    rows = torch.arange(height // PACK, device=device)
    cols = torch.arange(width // PACK, device=device)
    zero = torch.zeros(1, dtype=torch.long, device=device)
    return torch.cartesian_prod(zero, rows, cols, zero)


def flux2_text_ids(length: int, device: torch.device | str) -> torch.Tensor:
    """``(L, 4)`` int64 position ids (0, 0, 0, index) of the text tokens."""
    zero = torch.zeros(1, dtype=torch.long, device=device)
    return torch.cartesian_prod(zero, zero, zero, torch.arange(length, device=device))


class Flux2KleinAdapter(ArchAdapter):
    """FLUX.2 [klein] base: true CFG teacher, the student once per step on the prompt."""

    name = "flux2_klein"
    display_name = "FLUX.2 [klein]"
    transformer_cls = Flux2Transformer2DModel
    vae = "AutoencoderKLFlux2"
    text_pipeline = "Flux2KleinPipeline"
    true_cfg = True
    published_class_name = "ArcFlux2Transformer2DModel"
    input_embedder = "x_embedder"
    growable_stacks: dict[str, tuple[str, tuple[str, ...]]] = {}
    published_arch_keys = (
        "num_layers",
        "num_single_layers",
        "attention_head_dim",
        "num_attention_heads",
        "joint_attention_dim",
        "mlp_ratio",
        "guidance_embeds",
        "axes_dims_rope",
    )
    # FLUX.2 [klein] 4B (base and distilled share it).
    full_config = {
        "patch_size": 1,
        "in_channels": 128,
        "num_layers": 5,
        "num_single_layers": 20,
        "attention_head_dim": 128,
        "num_attention_heads": 24,
        "joint_attention_dim": 7680,
        "timestep_guidance_channels": 256,
        "mlp_ratio": 3.0,
        "axes_dims_rope": (32, 32, 32, 32),
        "rope_theta": 2000,
        "eps": 1e-6,
        "guidance_embeds": False,
    }
    lora_patterns = (
        r"transformer_blocks\.\d+\.ff\.linear_(in|out)",
        r"transformer_blocks\.\d+\.ff_context\.linear_(in|out)",
        r"single_transformer_blocks\.\d+\.attn\.to_out",
        r"time_guidance_embed\.timestep_embedder\.linear_[12]",
    )
    attention_lora_patterns = (
        DUAL_STREAM_ATTENTION,
        r"single_transformer_blocks\.\d+\.attn\.to_qkv_mlp_proj",
    )

    def check_transformer(self, transformer: nn.Module) -> None:
        super().check_transformer(transformer)
        if transformer.config.guidance_embeds:
            raise ValueError(
                "this FLUX.2 transformer embeds its guidance (FLUX.2 [dev]): only the klein base "
                "models, guided by true CFG, are supported"
            )

    def default_guidance_scale(self, transformer: ModelMixin) -> float | None:
        return KLEIN_GUIDANCE

    def prompt_token_counts(self, pipe: Any, prompts: list[str]) -> list[int]:
        # The chat-templated prompt, as the pipeline tokenises it.
        counts = []
        for prompt in prompts:
            text = pipe.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}],
                tokenize=False,
                add_generation_prompt=True,
                enable_thinking=False,
            )
            counts.append(len(pipe.tokenizer(text).input_ids))
        return counts

    def encode_prompts(self, pipe, prompts, device, max_sequence_length, negative_prompt):
        # Every prompt is padded to max_sequence_length: one length, so CFG runs as one batch.
        embeds, _ = pipe.encode_prompt(
            prompts + [negative_prompt] * len(prompts),
            device=device,
            max_sequence_length=max_sequence_length,
        )
        positive, negative = embeds.chunk(2)
        return {"prompt_embeds": positive, "negative_prompt_embeds": negative}

    def random_cond(self, config, batch, lengths, embeds, mask):
        return {
            "prompt_embeds": embeds(batch, lengths[0], config.joint_attention_dim),
            "negative_prompt_embeds": embeds(batch, lengths[1], config.joint_attention_dim),
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
        height, width = x.shape[-2:]
        out = transformer(
            hidden_states=pack_latents(x.to(dtype)),
            encoder_hidden_states=prompt.to(dtype),
            timestep=sigma,
            img_ids=flux2_image_ids(height, width, x.device),
            txt_ids=flux2_text_ids(prompt.shape[1], x.device),
            guidance=None,
            return_dict=False,
        )[0]
        return out[:, : (height // PACK) * (width // PACK)]

    def student_tokens(self, transformer, x, sigma, cond, guidance_scale):
        prompt = require(cond, "prompt_embeds", self.display_name, "(B, L, joint_attention_dim)")
        return self._forward(transformer, x, sigma, prompt, None)

    def teacher_velocity(self, transformer, x, sigma, cond, guidance_scale):
        return self.true_cfg_velocity(transformer, x, sigma, cond, guidance_scale)
