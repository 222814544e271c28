"""Tiny real FLUX / Qwen-Image transformers (the diffusers classes at toy sizes, random weights),
their conditioning and students, offered to the tests of this folder as the ``tiny`` fixture."""

from __future__ import annotations

import pytest
import torch

from arcflow.models import ArcFlowStudent, build_transformer

LATENT_CHANNELS = 4


class TinyWorld:
    configs = {
        # guidance_embeds=True: the embedded-guidance path of FLUX.1-dev is exercised.
        "flux": dict(
            patch_size=1,
            in_channels=16,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=32,
            pooled_projection_dim=32,
            axes_dims_rope=(4, 4, 8),
            guidance_embeds=True,
        ),
        "qwen_image": dict(
            patch_size=2,
            in_channels=16,
            out_channels=4,
            num_layers=2,
            attention_head_dim=16,
            num_attention_heads=3,
            joint_attention_dim=16,
            axes_dims_rope=(8, 4, 4),
        ),
    }

    def base(self, arch: str, seed: int = 0, dtype: torch.dtype = torch.float32):
        torch.manual_seed(seed)
        return build_transformer(arch, self.configs[arch], device="cpu", torch_dtype=dtype)

    def student(self, arch: str, dtype: torch.dtype = torch.float32, **kwargs) -> ArcFlowStudent:
        """K = 3, LoRA rank 2 without dropout unless overridden, on ``base(arch)``."""
        defaults = dict(num_components=3, lora_rank=2, lora_alpha=2, lora_dropout=0.0)
        return ArcFlowStudent(self.base(arch, dtype=dtype), arch, **{**defaults, **kwargs})

    def cond(self, arch: str, batch: int = 2, seed: int = 1, negative_len: int = 5) -> dict:
        gen = torch.Generator().manual_seed(seed)
        dim = self.configs[arch]["joint_attention_dim"]
        if arch == "flux":
            return {
                "prompt_embeds": torch.randn(batch, 5, dim, generator=gen),
                "pooled_prompt_embeds": torch.randn(batch, 32, generator=gen),
            }
        mask = torch.ones(batch, 5, dtype=torch.long)
        mask[0, -2:] = 0  # a padded prompt
        return {
            "prompt_embeds": torch.randn(batch, 5, dim, generator=gen),
            "prompt_embeds_mask": mask,
            "negative_prompt_embeds": torch.randn(batch, negative_len, dim, generator=gen),
            "negative_prompt_embeds_mask": torch.ones(batch, negative_len, dtype=torch.long),
        }

    def latents(self, batch: int = 2, height: int = 8, width: int = 6, seed: int = 2):
        gen = torch.Generator().manual_seed(seed)
        return torch.randn(batch, LATENT_CHANNELS, height, width, generator=gen)

    @torch.no_grad()
    def randomize(self, student: ArcFlowStudent, seed: int = 3, scale: float = 0.1) -> None:
        """Move every trainable tensor away from its initialisation (LoRA B included)."""
        gen = torch.Generator().manual_seed(seed)
        for _, param in student.trainable_named_parameters():
            param.add_((torch.randn(param.shape, generator=gen) * scale).to(param.dtype))


@pytest.fixture
def tiny() -> TinyWorld:
    return TinyWorld()
