"""Tiny real FLUX / Qwen-Image transformers (``tiny_models``: the diffusers classes at the toy
size, random weights), their conditioning and students, offered to the tests of this folder as the
``tiny`` fixture."""

from __future__ import annotations

import pytest
import torch
from tiny_models import STUDENT_KWARGS, TOY, toy_transformer

from arcflow.models import ArcFlowStudent

LATENT_CHANNELS = 4


class TinyWorld:
    configs = TOY

    def base(self, arch: str, seed: int = 0, dtype: torch.dtype = torch.float32):
        return toy_transformer(arch, seed, dtype)

    def student(self, arch: str, dtype: torch.dtype = torch.float32, **kwargs) -> ArcFlowStudent:
        """K = 3, LoRA rank 2 without dropout unless overridden, on ``base(arch)``."""
        return ArcFlowStudent(self.base(arch, dtype=dtype), arch, **{**STUDENT_KWARGS, **kwargs})

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
