"""Plain rectified-flow training of a FLUX / Qwen-Image transformer (the tiny world's teachers).

Flow matching (docs/method.md, Conventions): ``x_sigma = (1 - sigma) x0 + sigma eps`` and the
network regresses the velocity ``u = eps - x0`` with an MSE. Two targets are offered:

- data (stage A, and the Qwen teacher): ``u = eps - x0``, with text dropout (the caption replaced
  by the empty prompt) so that the model also learns the unconditional velocity that
  classifier-free guidance needs;
- guidance distillation (``cfg_teacher``, stage B of the FLUX teacher): the target is the frozen
  stage-A model's guided velocity ``u_neg + g (u_pos - u_neg)``, ``g ~ U[g_min, g_max]``, and the
  trained transformer gets ``g`` as its embedded guidance, as FLUX.1-dev was distilled.

A batch may carry a per-latent-pixel ``loss_weight`` (B, 1, h, w) that multiplies the squared
error, e.g. more weight where a dataset knows its images' objects are.
"""

from __future__ import annotations

from typing import Any

import torch
from mmengine.model import BaseModel
from mmengine.optim import OptimWrapper
from torch import nn

from arcflow.models.arch import Cond, get_arch
from arcflow.models.builder import build_base_from_cfg
from arcflow.models.vae import LatentCodec, load_vae
from arcflow.registry import MODELS

TIMESTEP_SAMPLING = ("logit_normal", "uniform")


def sample_sigmas(
    batch: int,
    sampling: str = "logit_normal",
    shift: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Training noise levels ``(B,)`` in (0, 1).

    ``logit_normal``: ``sigma = sigmoid(n)``, ``n ~ N(0, 1)`` (SD3's choice: mid noise levels,
    where the velocity is hardest, are drawn most). ``uniform``: ``sigma ~ U(0, 1)``. Either is
    then warped by ``shift``: ``s * sigma / (1 + (s - 1) sigma)``, as the sampler's grid is.
    """
    if sampling == "logit_normal":
        sigma = torch.sigmoid(torch.randn(batch, generator=generator))
    elif sampling == "uniform":
        sigma = torch.rand(batch, generator=generator)
    else:
        raise ValueError(f"timestep sampling must be one of {TIMESTEP_SAMPLING}, got {sampling!r}")
    return shift * sigma / (1 + (shift - 1) * sigma)


def _positive(cond: Cond) -> Cond:
    """The conditioning of one forward: without the ``negative_*`` keys the Qwen prompt encoder
    adds for the sampler's true CFG."""
    return {key: value for key, value in cond.items() if not key.startswith("negative_")}


def _drop_text(cond: Cond, empty: Cond, drop: torch.Tensor) -> Cond:
    """Rows of ``cond`` where ``drop`` (B,) is true replaced by the empty prompt's conditioning."""
    out = {}
    for key, value in cond.items():
        blank = empty[key].to(value).expand_as(value)
        mask = drop.view(-1, *[1] * (value.dim() - 1))
        out[key] = torch.where(mask, blank, value)
    return out


class LossModel(BaseModel):
    """A model whose only job is a loss: ``forward(data, mode="loss")`` -> ``self.loss(data)``,
    and a train step that routes that forward through a DDP wrapper when there is one."""

    def loss(self, data: dict[str, Any]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def forward(self, data: dict[str, Any] | None = None, mode: str = "loss", **kwargs: Any):
        if mode != "loss":
            raise ValueError(f"{type(self).__name__} only computes losses, got mode {mode!r}")
        return self.loss(data)

    def train_step(
        self, data: dict[str, Any], optim_wrapper: OptimWrapper, wrapper: nn.Module | None = None
    ) -> dict[str, torch.Tensor]:
        forward = wrapper if wrapper is not None else self
        data = self.data_preprocessor(data, training=True)
        with optim_wrapper.optim_context(forward):
            losses = forward(data=data, mode="loss")
        loss, log_vars = self.parse_losses(losses)
        optim_wrapper.update_params(loss)
        return log_vars


@MODELS.register_module()
class FlowMatchingTrainer(LossModel):
    """Trains a diffusers FLUX / Qwen-Image transformer by flow matching on captioned images.

    Args:
        arch: ``"flux"`` or ``"qwen_image"``.
        transformer: ``build_base_from_cfg`` keyword arguments (``from_config`` and/or
            ``from_pretrained``); the transformer is fully trained.
        pretrained: a local diffusers folder holding the trained ``vae/`` and the text side
            (``tokenizer*/``, ``text_encoder*/``); both stay frozen.
        max_sequence_length: token budget of the long text encoder.
        text_dropout: probability of replacing a caption by the empty prompt (data target).
        timestep_sampling, shift: see :func:`sample_sigmas`.
        guidance_scale: embedded guidance fed to a guidance-embedded FLUX transformer when training
            on data (stage A: a fixed value, 1.0 = "no guidance"); None for Qwen-Image.
        cfg_teacher: guidance distillation: ``dict(transformer=dict(...), guidance_scale=...)``
            building the frozen stage-A model (its own embedded guidance, if any, is fixed);
            the trained model gets ``g ~ U[*guidance_range]``.
        guidance_range: ``(g_min, g_max)`` of the distilled guidance.
        guidance_per_sample: draw ``g`` per sample instead of once per iteration. The error
            on the guided part ``g (u_pos - u_neg)`` grows like ``g^2``, so one draw per batch
            makes some iterations far louder than others (the tiny FLUX stage B's loss jumped
            20-fold between iterations); per-sample draws average that out.
        sample_posterior: encode images to a posterior sample or (default) its mean, as the
            tiny VAEs are trained to decode.
    """

    def __init__(
        self,
        arch: str,
        transformer: dict,
        pretrained: str,
        max_sequence_length: int = 32,
        text_dropout: float = 0.1,
        timestep_sampling: str = "logit_normal",
        shift: float = 1.0,
        guidance_scale: float | None = None,
        cfg_teacher: dict | None = None,
        guidance_range: tuple[float, float] = (1.0, 5.0),
        guidance_per_sample: bool = False,
        sample_posterior: bool = False,
        data_preprocessor: dict | None = None,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor)
        from arcflow.models.text_encoders import PromptEncoder

        if timestep_sampling not in TIMESTEP_SAMPLING:
            raise ValueError(f"timestep_sampling must be one of {TIMESTEP_SAMPLING}")
        self.arch = get_arch(arch)
        self.transformer = build_base_from_cfg(self.arch.name, "cpu", **transformer).train()
        self.transformer.requires_grad_(True)
        self.codec = LatentCodec(load_vae(pretrained)).requires_grad_(False)
        self.prompt_encoder = PromptEncoder(self.arch.name, pretrained, max_sequence_length)
        self.prompt_encoder.requires_grad_(False)
        self.text_dropout = text_dropout
        self.timestep_sampling = timestep_sampling
        self.shift = shift
        self.guidance_scale = guidance_scale
        self.guidance_range = tuple(guidance_range)
        self.guidance_per_sample = guidance_per_sample
        self.sample_posterior = sample_posterior
        self.cfg_teacher: nn.Module | None = None
        self.cfg_teacher_guidance: float | None = None
        if cfg_teacher is not None:
            cfg_teacher = dict(cfg_teacher)
            self.cfg_teacher_guidance = cfg_teacher.pop("guidance_scale", None)
            teacher = build_base_from_cfg(self.arch.name, "cpu", **cfg_teacher.pop("transformer"))
            if cfg_teacher:
                raise TypeError(f"unknown cfg_teacher keys {sorted(cfg_teacher)}")
            self.cfg_teacher = teacher.requires_grad_(False).eval()
        self._empty: Cond | None = None

    # ------------------------------------------------------------------ inputs
    def train(self, mode: bool = True) -> FlowMatchingTrainer:
        """Only the trained transformer changes mode; the frozen parts stay in eval."""
        super().train(mode)
        self.codec.eval()
        self.prompt_encoder.eval()
        if self.cfg_teacher is not None:
            self.cfg_teacher.eval()
        return self

    def empty_conditioning(self, cond: Cond) -> Cond:
        """The empty prompt's conditioning, batched like ``cond`` (the prompt encoder's output).

        Qwen-Image's encoder returns it (``negative_*``, padded to the positives' length); FLUX's
        T5 pads every prompt to one length, so it is encoded once and broadcast.
        """
        if "negative_prompt_embeds" in cond:
            return {
                key.removeprefix("negative_"): value
                for key, value in cond.items()
                if key.startswith("negative_")
            }
        if self._empty is None:
            self._empty = _positive(self.prompt_encoder([""]))
        return self._empty

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> normalised latents (B, C, H/f, W/f), float32."""
        return self.codec.encode(images, sample=self.sample_posterior).float()

    @torch.no_grad()
    def conditioning(self, prompts: list[str]) -> Cond:
        """The transformer's conditioning of ``prompts`` (``""`` is the empty prompt)."""
        return _positive(self.prompt_encoder(list(prompts)))

    def velocity(self, x: torch.Tensor, sigma: torch.Tensor, cond: Cond) -> torch.Tensor:
        """The trained transformer's velocity ``(B, C, h, w)`` at ``x`` (B, C, h, w) and noise
        level ``sigma`` (B,), at the trainer's embedded guidance (stage A: 1.0)."""
        return self._velocity(self.transformer, x, sigma, cond, self.guidance_scale)

    # ------------------------------------------------------------------ the loss
    def _velocity(
        self, model: nn.Module, x: torch.Tensor, sigma: torch.Tensor, cond: Cond, g: float | None
    ) -> torch.Tensor:
        return self.arch.teacher_velocity(model, x, sigma, cond, g)

    @torch.no_grad()
    def guided_target(
        self, x: torch.Tensor, sigma: torch.Tensor, cond: Cond, empty: Cond, g: float | torch.Tensor
    ) -> torch.Tensor:
        """``u_neg + g (u_pos - u_neg)`` of the frozen CFG teacher, one batched forward; ``g`` is
        a scalar or one scale per sample ``(B,)``."""
        both = {
            key: torch.cat([value, empty[key].to(value).expand_as(value)])
            for key, value in cond.items()
        }
        u = self._velocity(
            self.cfg_teacher, x.repeat(2, 1, 1, 1), sigma.repeat(2), both, self.cfg_teacher_guidance
        )
        u_pos, u_neg = u.chunk(2)
        g = torch.as_tensor(g, dtype=u.dtype, device=u.device).reshape(-1, 1, 1, 1)
        return u_neg + g * (u_pos - u_neg)

    def loss(self, data: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The flow-matching MSE of one batch: ``prompt`` (list) and either ``image``
        (B, 3, H, W) or pre-encoded ``latents`` (B, C, h, w); an optional ``loss_weight``
        (B, 1, h, w) multiplies the squared error per latent pixel."""
        x0 = data["latents"].float() if "latents" in data else self.encode(data["image"])
        weight = data.get("loss_weight")
        if weight is not None and tuple(weight.shape[-2:]) != tuple(x0.shape[-2:]):
            raise ValueError(
                f"loss_weight {tuple(weight.shape)} must be per latent pixel: "
                f"(B, 1, {x0.shape[-2]}, {x0.shape[-1]}) for these latents"
            )
        batch = x0.shape[0]
        with torch.no_grad():
            encoded = self.prompt_encoder(list(data["prompt"]))
        cond, empty = _positive(encoded), self.empty_conditioning(encoded)
        sigma = sample_sigmas(batch, self.timestep_sampling, self.shift).to(x0.device)
        eps = torch.randn_like(x0)
        s = sigma.view(-1, 1, 1, 1)
        x_sigma = (1 - s) * x0 + s * eps
        if self.cfg_teacher is None:
            drop = torch.rand(batch) < self.text_dropout
            cond = _drop_text(cond, empty, drop.to(x0.device))
            target = eps - x0
            guidance = self.guidance_scale
        else:
            low, high = self.guidance_range
            draw = torch.rand(batch if self.guidance_per_sample else ()).to(x0.device)
            guidance = low + (high - low) * draw
            target = self.guided_target(x_sigma, sigma, cond, empty, guidance)
        prediction = self._velocity(self.transformer, x_sigma, sigma, cond, guidance)
        error = (prediction.float() - target.float()).pow(2)
        if weight is not None:
            error = error * weight.to(error)
        return {"loss": error.mean()}


__all__ = ["FlowMatchingTrainer", "LossModel", "sample_sigmas"]
