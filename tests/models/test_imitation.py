"""Teacher-ratio schedule, interval sampling and the imitation rollout against hand computations."""

import pytest
import torch

from arcflow.flow import ArcFlowPolicy, warp_sigma
from arcflow.models.imitation import (
    ImitationConfig,
    imitate_segment,
    sample_intervals,
    teacher_ratio,
    window_and_substep,
)


def test_teacher_ratio_schedule():
    assert teacher_ratio(0, 1000) == 1.0
    assert teacher_ratio(250, 1000) == 0.75
    assert teacher_ratio(1000, 1000) == 0.0
    assert teacher_ratio(5000, 1000) == 0.0
    assert teacher_ratio(0, 0) == 0.0


def test_window_of_released_settings():
    window, substep = window_and_substep(0.5, ImitationConfig())
    assert substep == 0.5 / 64 and window == 3 * 0.5 / 64
    window, _ = window_and_substep(0.001, ImitationConfig())  # n clamps to 1, w to S
    assert window == 0.001


def test_interval_sums_and_bounds():
    g = torch.Generator().manual_seed(0)
    student, teacher = sample_intervals(1000, 4, 0.3, 0.2, g)
    assert student.shape == teacher.shape == (1000, 4)
    assert (student >= 0).all() and (teacher >= 0).all()
    assert (student.sum(1) <= 0.3 + 1e-12).all()
    torch.testing.assert_close(teacher.sum(1), torch.full((1000,), 0.2, dtype=torch.float64))
    # the student's cumulative positions are sorted uniform draws: their mean is span * i/(N+1)
    positions = student.cumsum(1).mean(0) / 0.3
    torch.testing.assert_close(
        positions, torch.tensor([0.2, 0.4, 0.6, 0.8], dtype=torch.float64), atol=0.02, rtol=0
    )
    # the teacher's spacings of [0, 1] each have mean 1 / N
    torch.testing.assert_close(
        teacher.mean(0) / 0.2, torch.full((4,), 0.25, dtype=torch.float64), atol=0.02, rtol=0
    )


def constant_policy(velocity, k=1, sigma_src=1.0):
    b, c, h, w = velocity.shape
    means = velocity.unsqueeze(1).expand(b, k, c, h, w).clone().requires_grad_(True)
    logits = torch.zeros(b, k, 1, h, w, requires_grad=True)
    rates = torch.zeros(b, k - 1, 1, h, w, requires_grad=True) if k > 1 else None
    return ArcFlowPolicy(means, logits, rates, sigma_src)


def test_full_teacher_ratio_puts_states_on_the_teacher_euler_path():
    cfg = ImitationConfig()
    seen = []

    def teacher(x, sigma):  # a state-dependent, curved field
        seen.append(x.clone())
        return -x * (1 + sigma.view(-1, 1, 1, 1)) + 0.3

    x_src = torch.randn(3, 2, 4, 4)
    policy = constant_policy(torch.randn(3, 2, 4, 4), k=4)
    imitate_segment(policy, x_src, 1.0, 0.5, teacher, 1.0, cfg, torch.Generator().manual_seed(7))

    window, _ = window_and_substep(0.5, cfg)
    _, teacher_dt = sample_intervals(3, 4, 0.0, 0.5 - window, torch.Generator().manual_seed(7))
    x, tau = x_src.clone(), torch.ones(3, dtype=torch.float64)
    for i in range(4):
        torch.testing.assert_close(seen[i], x)
        tau_b = tau - teacher_dt[:, i]
        s_a, s_b = warp_sigma(tau, 3.2).float(), warp_sigma(tau_b, 3.2).float()
        x = x + teacher(x, s_a) * (s_b - s_a).view(-1, 1, 1, 1)
        seen.pop()
        tau = tau_b


@pytest.mark.parametrize("k", [1, 3])
def test_student_equal_to_constant_teacher_has_zero_loss(k):
    velocity = torch.randn(2, 2, 4, 4)

    def teacher(x, sigma):
        return velocity

    x_src = torch.randn(2, 2, 4, 4)
    policy = constant_policy(velocity, k=k, sigma_src=float(warp_sigma(0.5, 3.2)))
    loss, x_end = imitate_segment(
        policy, x_src, 0.5, 0.5, teacher, 0.0, ImitationConfig(), torch.Generator().manual_seed(0)
    )
    assert loss.item() < 1e-10
    # the rollout ends at sigma = 0 after travelling the whole segment at the constant velocity
    torch.testing.assert_close(x_end, x_src - velocity * float(warp_sigma(0.5, 3.2)))


def test_loss_scale_and_gradients_reach_every_head():
    def teacher(x, sigma):
        return torch.ones_like(x)

    policy = constant_policy(torch.zeros(2, 2, 4, 4), k=3, sigma_src=1.0)
    with torch.no_grad():
        policy.log_rates.add_(0.3)
    loss, _ = imitate_segment(
        policy,
        torch.randn(2, 2, 4, 4),
        1.0,
        0.5,
        teacher,
        0.5,
        ImitationConfig(),
        torch.Generator(),
    )
    torch.testing.assert_close(loss, torch.tensor(15.0))  # means 0 vs teacher 1: 15 * mean(1)
    loss.backward()
    assert policy.velocity_means.grad.abs().sum() > 0
    assert policy.log_rates.grad is not None
