"""Training the tiny stacks' VAEs on rendered scenes, with extra weight on the objects."""

from __future__ import annotations

from typing import Any

import torch
from diffusers import AutoencoderKL, AutoencoderKLQwenImage

from arcflow.models.arch import get_arch
from arcflow.models.vae import load_vae
from arcflow.registry import MODELS
from arcflow.tinyworld.flow_matching import LossModel
from arcflow.tinyworld.scene_latents import object_mask
from arcflow.tinyworld.stack import build_vae


@MODELS.register_module()
class VAETrainer(LossModel):
    """Trains a tiny ``AutoencoderKL`` / ``AutoencoderKLQwenImage`` on rendered images.

    Loss: ``l1_weight * |x - D(z)| + l2_weight * (x - D(z))^2`` (pixel means, weighted by
    :func:`object_weights`) plus ``kl_weight * KL(q(z|x) || N(0, I))`` (mean over latent
    elements). The KL is small: it keeps the latent space tame, not unit-scaled (the export
    measures the latent statistics and writes them as the VAE's normalisation).

    Args:
        arch: ``"flux"`` (AutoencoderKL) or ``"qwen_image"`` (AutoencoderKLQwenImage).
        vae: constructor arguments; None gives the tiny world's architecture of ``arch``.
        sample_posterior: decode a posterior sample (a VAE) or its mean (an autoencoder). The
            mean trains several times faster at this size (the decoder never sees the unit
            posterior noise of initialisation); encode with the mean afterwards too.
        object_weight: extra loss weight on pixels near colour edges, i.e. on the objects, which
            cover a few percent of an image and would otherwise be learnt last.
        pretrained: start from the ``vae/`` of this diffusers folder instead of ``vae``.
        train_encoder: False refines the decoder only: the latents (and any model trained on
            them, such as a teacher) stay valid while the reconstructions improve.
    """

    def __init__(
        self,
        arch: str,
        vae: dict | None = None,
        l1_weight: float = 1.0,
        l2_weight: float = 1.0,
        kl_weight: float = 1e-4,
        sample_posterior: bool = False,
        object_weight: float = 4.0,
        pretrained: str | None = None,
        train_encoder: bool = True,
        data_preprocessor: dict | None = None,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor)
        arch = get_arch(arch).name
        if pretrained is not None:
            self.vae = load_vae(pretrained).requires_grad_(True).train()
        elif vae is None:
            self.vae = build_vae(arch)
        else:
            cls = AutoencoderKL if arch == "flux" else AutoencoderKLQwenImage
            self.vae = cls(**vae)
        if not train_encoder:
            for part in (self.vae.encoder, self.vae.quant_conv):
                if part is not None:
                    part.requires_grad_(False)
        self.video = isinstance(self.vae, AutoencoderKLQwenImage)
        self.l1_weight = l1_weight
        self.l2_weight = l2_weight
        self.kl_weight = kl_weight
        self.sample_posterior = sample_posterior
        self.object_weight = object_weight

    def reconstruct(self, images: torch.Tensor, sample: bool | None = None):
        """(B, 3, H, W) -> (reconstruction, posterior)."""
        sample = self.sample_posterior if sample is None else sample
        x = images.unsqueeze(2) if self.video else images
        posterior = self.vae.encode(x).latent_dist
        z = posterior.sample() if sample else posterior.mode()
        recon = self.vae.decode(z).sample
        return (recon[:, :, 0] if self.video else recon), posterior

    def loss(self, data: dict[str, Any]) -> dict[str, torch.Tensor]:
        images = data["image"].float()
        recon, posterior = self.reconstruct(images)
        weights = object_weights(images, self.object_weight)
        error = recon - images
        kl = 0.5 * (posterior.mean.pow(2) + posterior.var - 1.0 - posterior.logvar)
        return {
            "loss_l1": self.l1_weight * (weights * error.abs()).mean(),
            "loss_l2": self.l2_weight * (weights * error.pow(2)).mean(),
            "loss_kl": self.kl_weight * kl.mean(),
        }


def object_weights(images: torch.Tensor, extra: float) -> torch.Tensor:
    """Per-pixel loss weights ``1 + extra`` near the objects (:func:`object_mask`), else 1:
    ``(B, 3, H, W)`` -> ``(B, 1, H, W)``."""
    if extra == 0:
        return torch.ones_like(images[:, :1])
    return 1.0 + extra * object_mask(images)


__all__ = ["VAETrainer", "object_weights"]
