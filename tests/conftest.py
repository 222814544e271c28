"""Shared test fixtures: an analytic toy student for engine tests that need no transformer."""

import os

import pytest
import torch
from torch import nn

import arcflow.tinyworld.presets  # noqa: F401  (--preset tiny, as the entry scripts register it)
from arcflow.flow import ArcFlowPolicy

# The tests' tensors are tiny: one thread avoids thread start-up costs that dwarf the maths on a
# loaded 2-core machine (measured 10x faster here).
torch.set_num_threads(1)
# ... and so do the tools the tests start: a fixed count, not one chosen from the machine's load
# (arcflow.threads, tested on its own), keeps their output free of the load's message.
os.environ.setdefault("OMP_NUM_THREADS", "1")


class ToyStudent(nn.Module):
    """A student whose policy is a learnable K-component field, the same for every pixel, and a
    teacher with the curved, state-free velocity ``u(sigma) = a + b * exp(2 sigma)``.

    The teacher's path is then an exponential arc that one ArcFlow component (rate 2) represents
    exactly, while the linear shortcut (K = 1) cannot.
    """

    latent_channels = 2

    def __init__(self, num_components: int = 4) -> None:
        super().__init__()
        k = num_components
        self.means = nn.Parameter(torch.zeros(k, self.latent_channels))
        self.means_slope = nn.Parameter(torch.zeros(k, self.latent_channels))
        self.logits = nn.Parameter(torch.zeros(k))
        self.log_rates = nn.Parameter(torch.linspace(-1.0, 1.0, k - 1)) if k > 1 else None
        self.register_buffer("a", torch.tensor([0.5, -1.0]))
        self.register_buffer("b", torch.tensor([0.2, 0.3]))

    def student_policy(self, x, sigma, cond):
        b, c, h, w = x.shape
        k = self.means.shape[0]
        means = self.means + sigma.view(-1, 1, 1) * self.means_slope  # (B, K, C)
        means = means.view(b, k, c, 1, 1).expand(b, k, c, h, w)
        logits = self.logits.view(1, k, 1, 1, 1).expand(b, k, 1, h, w)
        rates = None
        if self.log_rates is not None:
            rates = self.log_rates.view(1, k - 1, 1, 1, 1).expand(b, k - 1, 1, h, w)
        return ArcFlowPolicy(means, logits, rates, sigma)

    def teacher_velocity(self, x, sigma, cond):
        u = self.a.view(1, -1, 1, 1) + self.b.view(1, -1, 1, 1) * torch.exp(2 * sigma).view(
            -1, 1, 1, 1
        )
        return u.to(x.dtype).expand_as(x)


@pytest.fixture
def toy_student():
    return ToyStudent
