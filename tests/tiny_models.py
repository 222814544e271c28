"""Tiny real models for the tests of every folder (a plain module: conftests import it, since
under ``--import-mode=importlib`` they cannot import each other).

- ``toy_transformer``: the diffusers FLUX / Qwen-Image classes at the ``"toy"`` size of
  ``arcflow.tinyworld.architectures`` (1 + 1 FLUX blocks, 4 latent channels), seeded random weights;
- ``tiny_world_model``: a tiny-world diffusers folder (its text side, a random VAE and a random
  ``"tiny"`` transformer), shaped like ``checkpoints/tiny-*`` without their training.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import ModelMixin

from arcflow.models.loading import build_transformer
from arcflow.tinyworld.architectures import transformer_config

ARCHS = ("flux", "qwen_image")
TOY = {arch: transformer_config(arch, "toy") for arch in ARCHS}
# The tests' students: K = 3, LoRA rank 2 without dropout.
STUDENT_KWARGS = dict(num_components=3, lora_rank=2, lora_alpha=2, lora_dropout=0.0)


def toy_transformer(arch: str, seed: int = 0, dtype: torch.dtype = torch.float32) -> ModelMixin:
    """A randomly initialised ``"toy"`` base transformer of ``arch`` on the CPU, in eval mode."""
    torch.manual_seed(seed)
    return build_transformer(arch, "toy", device="cpu", torch_dtype=dtype)


def tiny_world_model(folder: Path, arch: str, seed: int = 0) -> Path:
    """A tiny-world pipeline folder with random VAE and ``"tiny"`` transformer; returns it."""
    from arcflow.tinyworld.stack import ASSEMBLERS, build_vae

    torch.manual_seed(seed)
    transformer = build_transformer(arch, "tiny", device="cpu")
    return ASSEMBLERS[arch](folder, build_vae(arch).eval(), transformer)
