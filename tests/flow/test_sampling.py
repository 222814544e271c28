"""The teacher's sampling loop from a partly noised image (SDEdit-style ``start_sigma``)."""

from __future__ import annotations

import pytest
import torch

from arcflow.flow.sampling import sample_teacher, teacher_sigmas


class _PointMass:
    """The exact flow of data concentrated at ``x0``: ``u(x, sigma) = (x - x0) / sigma``, whose
    Euler steps land on the exact path ``x0 + (x - x0) sigma' / sigma``. Records each sigma."""

    def __init__(self, x0: torch.Tensor) -> None:
        self.x0 = x0
        self.sigmas: list[float] = []

    def teacher_velocity(self, x, sigma, cond):
        self.sigmas.append(float(sigma[0]))
        return (x - self.x0) / sigma.view(-1, 1, 1, 1).to(x)


@pytest.mark.parametrize("start", [1.0, 0.6, 0.05])
def test_teacher_from_a_noised_image_runs_the_grid_below_its_level(start):
    gen = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 4, 3, 3, generator=gen), torch.randn(2, 4, 3, 3, generator=gen)
    grid = teacher_sigmas(20)
    field = _PointMass(x0)
    path: list[tuple[float, torch.Tensor]] = []

    def record(step, sigma, latents):
        path.append((sigma, latents.clone()))

    out = sample_teacher(
        field, (1 - start) * x0 + start * eps, {}, 20, callback=record, start_sigma=start
    )
    below = grid[(grid < start) & (grid > 0)].tolist()
    assert field.sigmas == pytest.approx([start, *below] if start < 1 else grid[:-1].tolist())
    # Every state lies on the noised image's exact path, (1 - sigma) x0 + sigma eps.
    assert len(path) == len(field.sigmas)
    for sigma, latents in path:
        torch.testing.assert_close(latents, (1 - sigma) * x0 + sigma * eps, atol=1e-5, rtol=0)
    torch.testing.assert_close(out, x0, atol=1e-5, rtol=0)


def test_start_sigma_is_checked():
    assert torch.equal(teacher_sigmas(8, start_sigma=1.0), teacher_sigmas(8))
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="start_sigma must lie in"):
            teacher_sigmas(8, start_sigma=bad)
