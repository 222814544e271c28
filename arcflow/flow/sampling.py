"""The one sampling loop of the project, over unpacked latents ``(B, C, H, W)``.

Used by the diffusers pipelines, the training-time validation hook and evaluation, so that a
validation image and a pipeline image from the same noise are the same image.

Student (ArcFlow or the linear shortcut, K = 1): ``nfe`` evaluations at the step boundaries
``sigma_j = warp(tau_j)`` (``tau`` from :func:`step_boundaries`), each followed by the closed-form
move ``x <- P_j.move(x, sigma_j, sigma_{j+1})``.

Teacher: ``steps`` Euler steps ``x <- x + (sigma_{j+1} - sigma_j) * u_T(x, sigma_j)`` on the uniform
raw grid under the same static shift, guidance included in ``u_T``. From a partly noised image
``x = (1 - s) x0 + s eps`` (``start_sigma = s``, SDEdit-style) it runs the grid's steps below
``s``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch

from arcflow.flow import ArcFlowPolicy, step_boundaries, warp_sigma
from arcflow.released import RELEASED_NFE, RELEASED_SHIFT

Cond = dict[str, torch.Tensor]
# callback(step, sigma reached, latents) after each step; a returned tensor replaces the latents
# (as diffusers' ``callback_on_step_end`` may), None keeps them.
StepCallback = Callable[[int, float, torch.Tensor], torch.Tensor | None]


class SupportsSampling(Protocol):
    """What the sampler needs of a model: the student's policy and the teacher's velocity."""

    def student_policy(self, x: torch.Tensor, sigma: torch.Tensor, cond: Cond) -> ArcFlowPolicy: ...

    def teacher_velocity(
        self, x: torch.Tensor, sigma: torch.Tensor, cond: Cond
    ) -> torch.Tensor: ...


def student_sigmas(
    nfe: int, timestep_ratio: float = 1.0, shift: float = RELEASED_SHIFT
) -> torch.Tensor:
    """Noise levels at the student's step boundaries, float64 ``(nfe + 1,)`` from 1 to 0."""
    return warp_sigma(step_boundaries(nfe, timestep_ratio), shift)


def teacher_sigmas(
    steps: int, shift: float = RELEASED_SHIFT, start_sigma: float = 1.0
) -> torch.Tensor:
    """Noise levels of an Euler teacher on the uniform raw grid, float64 ``(steps + 1,)``; with
    ``start_sigma < 1``, ``start_sigma`` followed by the grid's levels below it."""
    if steps < 1:
        raise ValueError(f"teacher steps must be >= 1, got {steps}")
    if not 0.0 < start_sigma <= 1.0:
        raise ValueError(f"start_sigma must lie in (0, 1], got {start_sigma}")
    sigmas = warp_sigma(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64), shift)
    if start_sigma == 1.0:
        return sigmas
    return torch.cat([sigmas.new_tensor([start_sigma]), sigmas[sigmas < start_sigma]])


def make_noise(
    batch: int,
    channels: int,
    height: int,
    width: int,
    generator: torch.Generator | list[torch.Generator] | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Starting noise ``(B, C, H, W)`` in unpacked latent layout, drawn in float32 on the CPU.

    Drawing on the CPU from CPU generators makes the same seed give the same noise on every
    device and for every consumer (pipelines, validation, evaluation). A list gives one generator
    per sample, so an image does not depend on the batch it was made in.
    """
    shape = (channels, height, width)
    if isinstance(generator, list):
        if len(generator) != batch:
            raise ValueError(f"got {len(generator)} generators for a batch of {batch}")
        noise = torch.stack([torch.randn(shape, generator=g) for g in generator])
    else:
        noise = torch.randn((batch, *shape), generator=generator)
    return noise.to(device)


def _after_step(
    callback: StepCallback | None, step: int, sigma: float, x: torch.Tensor
) -> torch.Tensor:
    replaced = None if callback is None else callback(step, sigma, x)
    return x if replaced is None else replaced


def _batch_sigma(value: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return value.to(device=x.device, dtype=torch.float32).expand(x.shape[0])


@torch.no_grad()
def sample_student(
    model: SupportsSampling,
    noise: torch.Tensor,
    cond: Cond,
    nfe: int = RELEASED_NFE,
    timestep_ratio: float = 1.0,
    shift: float = RELEASED_SHIFT,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """Generate latents with ``nfe`` student evaluations from ``noise`` ``(B, C, H, W)``.

    ``callback(step, sigma, latents)`` runs after each step (pipelines feed their progress bar
    and ``callback_on_step_end`` from it); a tensor it returns replaces the latents.
    """
    sigmas = student_sigmas(nfe, timestep_ratio, shift)
    x = noise
    for j in range(nfe):
        policy = model.student_policy(x, _batch_sigma(sigmas[j], x), cond)
        x = policy.move(x, float(sigmas[j]), float(sigmas[j + 1]))
        x = _after_step(callback, j, float(sigmas[j + 1]), x)
    return x


@torch.no_grad()
def sample_teacher(
    model: SupportsSampling,
    noise: torch.Tensor,
    cond: Cond,
    steps: int = 50,
    shift: float = RELEASED_SHIFT,
    callback: StepCallback | None = None,
    start_sigma: float = 1.0,
) -> torch.Tensor:
    """Generate latents with ``steps`` Euler steps of the teacher from ``noise``; from
    ``start_sigma < 1``, ``noise`` is the noised image at that level and only the steps below it
    run."""
    sigmas = teacher_sigmas(steps, shift, start_sigma)
    x = noise
    for j in range(len(sigmas) - 1):
        u = model.teacher_velocity(x, _batch_sigma(sigmas[j], x), cond)
        x = (x.float() + float(sigmas[j + 1] - sigmas[j]) * u.float()).to(x.dtype)
        x = _after_step(callback, j, float(sigmas[j + 1]), x)
    return x
