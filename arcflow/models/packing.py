"""Latent packing shared by FLUX and Qwen-Image.

Both diffusers pipelines (``FluxPipeline._pack_latents``, ``QwenImagePipeline._pack_latents``) turn
a latent ``(B, C, H, W)`` into ``(H/2)(W/2)`` tokens of ``C * 2 * 2`` features, feature index
``c * 4 + i * 2 + j`` for the sub-pixel ``(i, j)`` of each 2x2 patch, tokens in row-major patch
order. The transformers' ``proj_out`` emits tokens in the same layout, and so do the ArcFlow heads,
with a leading component axis per token. The layout is re-written here (and checked against the
pipelines' helpers in the tests) so that training does not import pipeline internals.
"""

from __future__ import annotations

import torch

PACK = 2  # both pipelines pack 2x2 latent pixels into one token


def pack_latents(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, (H/2) * (W/2), C * 4)``."""
    b, c, h, w = x.shape
    if h % PACK or w % PACK:
        raise ValueError(f"latent height and width must be even to pack 2x2 patches, got {h}x{w}")
    x = x.view(b, c, h // PACK, PACK, w // PACK, PACK).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // PACK) * (w // PACK), c * PACK * PACK)


def unpack_tokens(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`pack_latents` with a group axis: ``(B, N, G, D*4)`` -> ``(B, G, D, H, W)``.

    ``G`` is the component axis of the ArcFlow heads (``K`` means, ``K`` logits, ``K - 1`` rates);
    a plain velocity uses ``G = 1``.
    """
    b, n, g, f = tokens.shape
    hp, wp = height // PACK, width // PACK
    if n != hp * wp or f % (PACK * PACK):
        raise ValueError(
            f"cannot unpack tokens of shape {tuple(tokens.shape)} to a {height}x{width} latent "
            f"(expects {hp * wp} tokens of a multiple of {PACK * PACK} features)"
        )
    d = f // (PACK * PACK)
    x = tokens.view(b, hp, wp, g, d, PACK, PACK).permute(0, 3, 4, 1, 5, 2, 6)
    return x.reshape(b, g, d, height, width)


def flux_image_ids(height: int, width: int, device: torch.device | str) -> torch.Tensor:
    """FLUX rotary position ids of the packed tokens of a ``height x width`` latent: ``(N, 3)``.

    Row ``(0, row, col)`` per token, as ``FluxPipeline._prepare_latent_image_ids`` builds them. They
    are float32 here (the pipeline uses the prompt dtype; identical for positions below 256).
    """
    hp, wp = height // PACK, width // PACK
    rows = torch.arange(hp, device=device).repeat_interleave(wp)
    cols = torch.arange(wp, device=device).repeat(hp)
    return torch.stack([torch.zeros_like(rows), rows, cols], dim=-1).float()
