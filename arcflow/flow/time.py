"""The one time convention of the project.

Noise level ``sigma`` in [0, 1]: ``x_sigma = (1 - sigma) * x0 + sigma * eps`` (sigma = 1 is pure
noise) and the velocity is ``u = dx/dsigma = eps - x0``. Samplers integrate sigma from 1 down to 0.

Raw time ``tau`` in [0, 1] is the uniform grid; the noise level is its static shift warp

    sigma = warp(tau) = s * tau / (1 + (s - 1) * tau)
    tau   = warp^-1(sigma) = sigma / (s + (1 - s) * sigma)

diffusers transformers take ``timestep = sigma`` (and multiply by 1000 inside); diffusers schedulers
store ``sigma * 1000``. That conversion happens in the pipelines only.
"""

from __future__ import annotations

import torch

Time = float | torch.Tensor


def _check_unit_interval(name: str, value: Time) -> None:
    bad = (value < 0) | (value > 1)
    if bool(bad.any()) if isinstance(value, torch.Tensor) else bad:
        raise ValueError(f"{name} must lie in [0, 1], got {value}")


def _check_shift(shift: float) -> None:
    if not shift > 0:
        raise ValueError(f"shift must be positive, got {shift}")


def warp_sigma(tau: Time, shift: float) -> Time:
    """Noise level of raw time ``tau``: ``sigma = s * tau / (1 + (s - 1) * tau)``."""
    _check_shift(shift)
    _check_unit_interval("tau", tau)
    return shift * tau / (1 + (shift - 1) * tau)


def unwarp_sigma(sigma: Time, shift: float) -> Time:
    """Raw time of noise level ``sigma``: ``tau = sigma / (s + (1 - s) * sigma)``."""
    _check_shift(shift)
    _check_unit_interval("sigma", sigma)
    return sigma / (shift + (1 - shift) * sigma)


def step_boundaries(nfe: int, timestep_ratio: float = 1.0) -> torch.Tensor:
    """Raw-time boundaries of an ``nfe``-step sampler, from 1 down to 0.

    With ``base = 1 / (nfe - 1 + rho)`` the boundaries are ``1, 1 - base, ..., rho * base, 0``: all
    segments have raw length ``base`` except the last, of length ``rho * base``.

    Returns:
        float64 tensor of shape ``(nfe + 1,)``.
    """
    if isinstance(nfe, bool) or not isinstance(nfe, int) or nfe < 1:
        raise ValueError(f"nfe must be an integer >= 1, got {nfe!r}")
    if not 0 < timestep_ratio <= 1:
        raise ValueError(f"timestep_ratio must lie in (0, 1], got {timestep_ratio}")
    base = 1.0 / (nfe - 1 + timestep_ratio)
    steps = torch.arange(nfe, dtype=torch.float64)
    boundaries = torch.cat([1.0 - steps * base, torch.zeros(1, dtype=torch.float64)])
    return boundaries.clamp_(min=0.0)
