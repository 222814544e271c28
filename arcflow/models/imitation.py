"""Trajectory imitation on one student segment (docs/method.md, Distillation).

Raw times ``tau`` index the segment; noise levels are ``sigma = warp(tau)``. For a segment starting
at ``tau_src`` of raw length ``S`` the student's policy ``P`` (evaluated at ``sigma(tau_src)``) is
taught, at ``N_I`` intermediate states, to match the teacher's velocity:

    n      = max(round(S * total_substeps), 1)          substeps of the segment
    w      = min(window_substeps * S / n, S)            prediction window
    a_i    ~ sorted-uniform spacings of [0, (1 - rho_T)(S - w)]   (student moves)
    b_i    ~ uniform spacings of [0, 1] times rho_T (S - w)        (teacher moves)
    tau_a  = max(tau - a_i, 0);  tau_b = max(tau_a - b_i, 0)
    x_a    = P~.move(x, sigma(tau), sigma(tau_a))                  (no grad, P~ = dropout(P))
    u_T    = teacher velocity at (x_a, sigma(tau_a))
    pred   = P.mean_velocity(sigma(tau_a), sigma(tau_b - w))  or  P.velocity(sigma(tau_a))
             when that interval is shorter than 2 substeps
    x      = x_a + u_T * (sigma(tau_b) - sigma(tau_a));  tau = tau_b
    L      = loss_scale * mean_i,batch,elements (pred - u_T)^2

The teacher ratio ``rho_T`` decays from 1 (states on the teacher's path) to 0 (states on the
student's own arc).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from arcflow.flow import ArcFlowPolicy, warp_sigma
from arcflow.released import RELEASED_SHIFT

TeacherFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ImitationConfig:
    """Hyperparameters of the imitation (released values by default)."""

    num_intermediate_states: int = 4
    window_substeps: int = 3
    total_substeps: int = 128
    policy_dropout: float = 0.1
    loss_scale: float = 15.0
    shift: float = RELEASED_SHIFT

    def __post_init__(self) -> None:
        if self.num_intermediate_states < 1:
            raise ValueError("num_intermediate_states must be >= 1")
        if self.total_substeps < 1 or self.window_substeps < 0:
            raise ValueError("total_substeps must be >= 1 and window_substeps >= 0")


@dataclass(frozen=True)
class MicroBatch:
    """Rows ``start:stop`` of a batch of ``size`` samples: the part of an iteration's batch that
    one forward and backward handle when gradients are accumulated.

    Every random draw of an iteration is made for the whole batch and then sliced to these rows,
    so a sample's noise, intervals and dropout do not depend on how the batch is split: an
    iteration accumulated over micro-batches computes the gradient of the whole batch.
    """

    start: int
    stop: int
    size: int

    @classmethod
    def whole(cls, size: int) -> MicroBatch:
        return cls(0, size, size)

    @classmethod
    def split(cls, size: int, micro_size: int | None) -> list[MicroBatch]:
        """Consecutive micro-batches of ``micro_size`` rows (the last may be smaller)."""
        step = size if micro_size is None else micro_size
        return [cls(start, min(start + step, size), size) for start in range(0, size, step)]

    @property
    def rows(self) -> slice:
        return slice(self.start, self.stop)

    @property
    def fraction(self) -> float:
        """Its share of the batch: the weight of its mean loss in the batch's mean loss."""
        return (self.stop - self.start) / self.size


def teacher_ratio(iteration: int, decay_iters: int) -> float:
    """``rho_T = 1 - min(iter, N_decay) / N_decay`` (0 when ``N_decay = 0``)."""
    if decay_iters <= 0:
        return 0.0
    return 1.0 - min(iteration, decay_iters) / decay_iters


def window_and_substep(segment: float, cfg: ImitationConfig) -> tuple[float, float]:
    """The prediction window ``w`` and the substep length ``S / n`` of a segment (raw time)."""
    n = max(round(segment * cfg.total_substeps), 1)
    substep = segment / n
    return min(cfg.window_substeps * substep, segment), substep


def sample_intervals(
    batch: int,
    num_states: int,
    student_span: float,
    teacher_span: float,
    generator: torch.Generator,
    rows: slice = slice(None),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Student and teacher raw-time intervals, each ``(B, N_I)`` float64.

    Student: ``N_I`` sorted uniform draws on ``[0, student_span]`` as successive differences from
    0 (they sum to at most ``student_span``). Teacher: the ``N_I`` spacings of ``[0, 1]`` cut by
    ``N_I - 1`` sorted uniform draws, times ``teacher_span`` (they sum to exactly it).
    ``rows``: draw for ``batch`` samples, return these rows (:class:`MicroBatch`).
    """
    draws = torch.rand(batch, num_states, generator=generator, dtype=torch.float64)[rows]
    inner = torch.rand(batch, num_states - 1, generator=generator, dtype=torch.float64)[rows]
    batch = draws.shape[0]
    cuts = torch.sort(draws, dim=1).values * student_span
    student = torch.diff(cuts, dim=1, prepend=torch.zeros(batch, 1, dtype=torch.float64))
    edges = torch.cat(
        [
            torch.zeros(batch, 1, dtype=torch.float64),
            torch.sort(inner, dim=1).values,
            torch.ones(batch, 1, dtype=torch.float64),
        ],
        dim=1,
    )
    teacher = torch.diff(edges, dim=1) * teacher_span
    return student, teacher


def imitate_segment(
    policy: ArcFlowPolicy,
    x_src: torch.Tensor,
    tau_src: float,
    segment: float,
    teacher: TeacherFn,
    rho_t: float,
    cfg: ImitationConfig,
    generator: torch.Generator,
    micro: MicroBatch | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Imitation loss of one student segment and the (detached) state at its end.

    Args:
        policy: the student's policy at ``sigma(tau_src)``, with gradient.
        x_src: ``(B, C, H, W)`` state at ``tau_src``.
        teacher: ``(x, sigma (B,)) -> (B, C, H, W)`` teacher velocity (guidance included).
        generator: a CPU generator; all draws come from it so a run is reproducible.
        micro: which rows of the iteration's batch ``x_src`` holds (None: all of it); the draws
            are made for the whole batch and sliced.

    Returns:
        ``(loss, x_end)``: the scalar float32 loss ``L`` and the state at ``tau_src - segment``.
    """
    batch, device = x_src.shape[0], x_src.device
    micro = micro or MicroBatch.whole(batch)
    window, substep = window_and_substep(segment, cfg)
    free = segment - window
    student_dt, teacher_dt = sample_intervals(
        micro.size,
        cfg.num_intermediate_states,
        (1 - rho_t) * free,
        rho_t * free,
        generator,
        micro.rows,
    )
    rollout = policy.detach().dropout(
        cfg.policy_dropout, generator=generator, rows=micro.rows, batch_size=micro.size
    )

    def sigma(tau: torch.Tensor) -> torch.Tensor:
        return warp_sigma(tau.clamp(min=0.0), cfg.shift).to(device)

    tau = torch.full((batch,), tau_src, dtype=torch.float64)
    x = x_src.detach()
    losses = []
    for i in range(cfg.num_intermediate_states):
        tau_a = (tau - student_dt[:, i]).clamp(min=0.0)
        tau_b = (tau_a - teacher_dt[:, i]).clamp(min=0.0)
        sigma_a = sigma(tau_a)
        with torch.no_grad():
            x_a = rollout.move(x, sigma(tau), sigma_a)
            u_teacher = teacher(x_a, sigma_a).float()
        short = ((tau_a - (tau_b - window)) < 2 * substep).to(device)
        mean = policy.mean_velocity(sigma_a, sigma(tau_b - window))
        local = policy.velocity(sigma_a)
        prediction = torch.where(short.view(-1, *[1] * (local.ndim - 1)), local, mean)
        losses.append((prediction.float() - u_teacher).square().mean())
        x = (x_a.float() + u_teacher * (sigma(tau_b) - sigma_a).view(-1, *[1] * (x.ndim - 1))).to(
            x.dtype
        )
        tau = tau_b
    loss = cfg.loss_scale * torch.stack(losses).mean()
    with torch.no_grad():
        # min() absorbs the rounding of the interval sums, which may overshoot by an ulp
        end = torch.full((batch,), max(tau_src - segment, 0.0), dtype=torch.float64).minimum(tau)
        x_end = rollout.move(x, sigma(tau), sigma(end))
    return loss, x_end
