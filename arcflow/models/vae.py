"""Images <-> the normalised latents the transformers see, for both VAE families.

FLUX (``AutoencoderKL``): ``z = (E(x) - shift_factor) * scaling_factor``.
Qwen-Image (``AutoencoderKLQwenImage``, a video VAE with one frame): ``z = (E(x) - mean) / std``
per channel. Decoding inverts these exactly as the diffusers pipelines do, so a latent made here
decodes to the same image there.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, AutoencoderKLQwenImage
from torch import nn


class LatentCodec(nn.Module):
    """Wraps a diffusers VAE: ``encode`` ``(B, 3, H, W)`` in [-1, 1] -> ``(B, C, H/f, W/f)``;
    ``decode`` the reverse. ``sample=False`` encodes to the posterior mean."""

    def __init__(self, vae: AutoencoderKL | AutoencoderKLQwenImage) -> None:
        super().__init__()
        if not isinstance(vae, (AutoencoderKL, AutoencoderKLQwenImage)):
            raise TypeError(f"unsupported VAE {type(vae).__name__}")
        self.vae = vae
        self.video = isinstance(vae, AutoencoderKLQwenImage)

    def _mean_std(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.vae.config
        if self.video:
            shape = (1, cfg.z_dim, 1, 1)
            mean = torch.tensor(cfg.latents_mean).view(shape)
            std = torch.tensor(cfg.latents_std).view(shape)
        else:
            mean = torch.tensor(cfg.shift_factor or 0.0)
            std = torch.tensor(1.0 / cfg.scaling_factor)
        return mean.to(like), std.to(like)

    def encode(
        self, images: torch.Tensor, generator: torch.Generator | None = None, sample: bool = True
    ) -> torch.Tensor:
        x = images.to(self.vae.dtype)
        if self.video:
            x = x.unsqueeze(2)
        posterior = self.vae.encode(x).latent_dist
        z = posterior.sample(generator) if sample else posterior.mode()
        if self.video:
            z = z[:, :, 0]
        mean, std = self._mean_std(z)
        return (z - mean) / std

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        z = latents.to(self.vae.dtype)
        mean, std = self._mean_std(z)
        z = z * std + mean
        if self.video:
            return self.vae.decode(z.unsqueeze(2)).sample[:, :, 0]
        return self.vae.decode(z).sample

    @property
    def spatial_factor(self) -> int:
        if self.video:
            return 2 ** len(self.vae.temperal_downsample)
        return 2 ** (len(self.vae.config.block_out_channels) - 1)


def load_vae(
    pretrained: str, subfolder: str | None = "vae"
) -> AutoencoderKL | AutoencoderKLQwenImage:
    """The VAE of a local diffusers folder (either family), frozen, in eval mode."""
    from diffusers import AutoModel

    vae = AutoModel.from_pretrained(
        pretrained, subfolder=subfolder, local_files_only=True, torch_dtype=torch.float32
    )
    return vae.requires_grad_(False).eval()
