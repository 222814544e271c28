"""The ArcFlow policy: a mixture of momentum processes, integrated in closed form.

One student evaluation at ``(x_src, sigma_src)`` gives, per latent element, K velocity means
``mu_k``, mixture logits ``l_k`` (weights ``w_k = softmax_k(l_k)``) and log momentum rates ``r_k``
(``r_0 = 0``: component 0 moves at constant velocity). Inside the step the velocity is

    v(sigma) = sum_k w_k * mu_k * exp(r_k * (sigma_src - sigma))

and does not depend on the state, so the ODE ``dx/dsigma = v(sigma)`` integrates exactly. Over
``[sigma_a, sigma_b]`` with ``h = sigma_a - sigma_b``:

    x(sigma_b) = x(sigma_a) - h * vbar(sigma_a, sigma_b)
    vbar(sigma_a, sigma_b) = sum_k w_k * mu_k * exp(r_k * (sigma_src - sigma_a)) * phi(r_k * h)
    phi(z) = (exp(z) - 1) / z,   phi(0) = 1

With K = 1 the policy is the linear shortcut: a constant-velocity Euler step.
"""

from __future__ import annotations

import torch

Sigma = float | torch.Tensor

# Below these |z| phi uses its Taylor series, which errs by z^6/5040 (its slope by z^5/840); above
# them autograd's slope of expm1(z)/z loses about eps/|z| to cancellation. Each threshold keeps
# both errors near the dtype's eps.
_SERIES_THRESHOLD = {torch.float64: 1e-3, torch.float32: 5e-2}


def phi(z: torch.Tensor) -> torch.Tensor:
    """``phi(z) = expm1(z) / z`` with ``phi(0) = 1``, smooth in value and gradient through 0.

    Near 0 it is the series ``1 + z/2 + z^2/6 + z^3/24 + z^4/120 + z^5/720``; elsewhere
    ``expm1(z) / z``. The branch not
    taken is fed a harmless argument so that no NaN leaks into the gradient through ``torch.where``.
    """
    threshold = _SERIES_THRESHOLD.get(z.dtype, 5e-2)
    small = z.abs() < threshold
    z_far = torch.where(small, torch.ones_like(z), z)
    far = torch.expm1(z_far) / z_far
    near = 1 + z * (1 / 2 + z * (1 / 6 + z * (1 / 24 + z * (1 / 120 + z / 720))))
    return torch.where(small, near, far)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half types and float32, float64 for float64."""
    return torch.promote_types(dtype, torch.float32)


class ArcFlowPolicy:
    """The velocity field a student commits to for one step.

    Args:
        velocity_means: ``(B, K, C, H, W)`` or ``(B, K, C, T, H, W)``, the means ``mu_k``.
        logits: ``(B, K, 1, *spatial)``, mixture logits shared by the channels of a pixel.
        log_rates: ``(B, K-1, 1, *spatial)``, ``r_k`` for components 1..K-1; ``None`` when K = 1.
        sigma_src: ``(B,)`` tensor or a float, the noise level the student was evaluated at.

    All arithmetic runs in float32 or wider (bf16/fp16 inputs are promoted, float64 stays float64).
    """

    def __init__(
        self,
        velocity_means: torch.Tensor,
        logits: torch.Tensor,
        log_rates: torch.Tensor | None,
        sigma_src: Sigma,
    ) -> None:
        if velocity_means.ndim not in (5, 6):
            raise ValueError(
                "velocity_means must be (B, K, C, H, W) or (B, K, C, T, H, W), got shape "
                f"{tuple(velocity_means.shape)}"
            )
        batch, k = velocity_means.shape[:2]
        spatial = tuple(velocity_means.shape[3:])
        if tuple(logits.shape) != (batch, k, 1, *spatial):
            raise ValueError(
                f"logits must have shape {(batch, k, 1, *spatial)} to match velocity_means "
                f"{tuple(velocity_means.shape)}, got {tuple(logits.shape)}"
            )
        if log_rates is None:
            log_rates = velocity_means.new_zeros((batch, 0, 1, *spatial))
        if tuple(log_rates.shape) != (batch, k - 1, 1, *spatial):
            raise ValueError(
                f"log_rates must have shape {(batch, k - 1, 1, *spatial)} (K - 1 = {k - 1} rates "
                f"for K = {k} components), got {tuple(log_rates.shape)}"
            )
        self.dtype = _compute_dtype(velocity_means.dtype)
        self.velocity_means = velocity_means
        self.logits = logits
        self.log_rates = log_rates
        self.sigma_src = self._as_batch_sigma(sigma_src, "sigma_src")

    # ------------------------------------------------------------------ shapes and conversions
    @property
    def batch_size(self) -> int:
        return self.velocity_means.shape[0]

    @property
    def num_components(self) -> int:
        return self.velocity_means.shape[1]

    def _as_batch_sigma(self, sigma: Sigma, name: str) -> torch.Tensor:
        """Validate ``sigma`` and return it as a ``(B,)`` tensor in the compute dtype."""
        device = self.velocity_means.device
        sigma = torch.as_tensor(sigma, dtype=self.dtype, device=device)
        if sigma.ndim == 0:
            sigma = sigma.expand(self.batch_size)
        if tuple(sigma.shape) != (self.batch_size,):
            raise ValueError(
                f"{name} must be a float or a ({self.batch_size},) tensor, got shape "
                f"{tuple(sigma.shape)}"
            )
        if bool(((sigma < 0) | (sigma > 1)).any()):
            raise ValueError(f"{name} must lie in [0, 1], got {sigma.tolist()}")
        return sigma

    def _per_sample(self, sigma: torch.Tensor, ndim: int | None = None) -> torch.Tensor:
        """``(B,)`` -> ``(B, 1, 1, ...)`` with ``ndim`` dimensions (default: that of the means)."""
        ndim = self.velocity_means.ndim if ndim is None else ndim
        return sigma.view(-1, *([1] * (ndim - 1)))

    def _rates(self) -> torch.Tensor:
        """``r`` for all K components, ``r_0 = 0``: ``(B, K, 1, *spatial)``."""
        zero = self.log_rates.new_zeros((self.batch_size, 1, *self.log_rates.shape[2:]))
        return torch.cat([zero, self.log_rates], dim=1).to(self.dtype)

    def _weights(self) -> torch.Tensor:
        """``w_k = softmax_k(l_k)``: ``(B, K, 1, *spatial)``."""
        return torch.softmax(self.logits.to(self.dtype), dim=1)

    # ------------------------------------------------------------------ the maths
    def velocity(self, sigma: Sigma) -> torch.Tensor:
        """``v(sigma) = sum_k w_k mu_k exp(r_k (sigma_src - sigma))``: ``(B, C, *spatial)``."""
        sigma = self._per_sample(self._as_batch_sigma(sigma, "sigma"))
        growth = torch.exp(self._rates() * (self._per_sample(self.sigma_src) - sigma))
        return (self._weights() * growth * self.velocity_means.to(self.dtype)).sum(dim=1)

    def mean_velocity(self, sigma_from: Sigma, sigma_to: Sigma) -> torch.Tensor:
        """Mean velocity over ``[sigma_to, sigma_from]``, ``(x(sigma_from) - x(sigma_to)) / h``.

        ``vbar = sum_k w_k mu_k exp(r_k (sigma_src - sigma_from)) phi(r_k h)``, with
        ``h = sigma_from - sigma_to >= 0``; at ``h = 0`` it is ``velocity(sigma_from)``.

        Returns:
            ``(B, C, *spatial)`` in the compute dtype.
        """
        sigma_from = self._as_batch_sigma(sigma_from, "sigma_from")
        sigma_to = self._as_batch_sigma(sigma_to, "sigma_to")
        if bool((sigma_to > sigma_from).any()):
            raise ValueError(
                "sampling runs from high to low noise: sigma_to must be <= sigma_from, got "
                f"sigma_from={sigma_from.tolist()} sigma_to={sigma_to.tolist()}"
            )
        step = self._per_sample(sigma_from - sigma_to)
        rates = self._rates()
        growth = torch.exp(rates * (self._per_sample(self.sigma_src - sigma_from)))
        factor = growth * phi(rates * step)
        return (self._weights() * factor * self.velocity_means.to(self.dtype)).sum(dim=1)

    def move(self, x: torch.Tensor, sigma_from: Sigma, sigma_to: Sigma) -> torch.Tensor:
        """Closed-form move ``x(sigma_to) = x(sigma_from) - h * vbar(sigma_from, sigma_to)``.

        Args:
            x: ``(B, C, *spatial)`` state at ``sigma_from``.
        Returns:
            the state at ``sigma_to``, in the dtype of ``x``.
        """
        vbar = self.mean_velocity(sigma_from, sigma_to)
        if tuple(x.shape) != tuple(vbar.shape):
            raise ValueError(
                f"x must have the policy's latent shape {tuple(vbar.shape)}, got {tuple(x.shape)}"
            )
        step = self._as_batch_sigma(sigma_from, "sigma_from") - self._as_batch_sigma(
            sigma_to, "sigma_to"
        )
        return (x.to(self.dtype) - self._per_sample(step, x.ndim) * vbar).to(x.dtype)

    # ------------------------------------------------------------------ derived policies
    def detach(self) -> ArcFlowPolicy:
        """The same policy with no autograd history."""
        return ArcFlowPolicy(
            self.velocity_means.detach(),
            self.logits.detach(),
            self.log_rates.detach(),
            self.sigma_src.detach(),
        )

    def dropout(
        self,
        p: float,
        generator: torch.Generator | None = None,
        rows: slice = slice(None),
        batch_size: int | None = None,
    ) -> ArcFlowPolicy:
        """Drop whole components per sample with probability ``p`` (logit set to -inf).

        A sample never loses all of its components: where every draw says drop, the component
        with the largest draw is kept, which keeps a uniformly random one. With ``rows`` the
        draws are made for ``batch_size`` samples and these rows used: this policy is a slice of
        a larger batch whose samples must draw what they draw in the whole batch.
        """
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must lie in [0, 1), got {p}")
        if p == 0 or self.num_components == 1:
            return self
        draw_device = generator.device if generator is not None else self.logits.device
        u = torch.rand(
            (batch_size or self.batch_size, self.num_components),
            generator=generator,
            device=draw_device,
        )[rows].to(self.logits.device)
        drop = u < p
        keep_one = torch.nn.functional.one_hot(u.argmax(dim=1), self.num_components).bool()
        drop &= ~(drop.all(dim=1, keepdim=True) & keep_one)
        mask = drop.view(*drop.shape, *([1] * (self.logits.ndim - 2)))
        logits = self.logits.masked_fill(mask, float("-inf"))
        return ArcFlowPolicy(self.velocity_means, logits, self.log_rates, self.sigma_src)
