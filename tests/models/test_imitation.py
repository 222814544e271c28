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


def test_loss_scale():
    def teacher(x, sigma):
        return torch.ones_like(x)

    policy = constant_policy(torch.zeros(2, 2, 4, 4), k=3, sigma_src=1.0)
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


SHIFT = 3.2


def curved_teacher(x, sigma):
    """A state-dependent, non-linear field (float64 in, float64 out)."""
    s = sigma.view(-1, 1, 1, 1).to(x.dtype)
    return torch.sin(x) * (1 + s) - 0.7 * x * s**2 + 0.2


def integral(params, sigma_src, high, low):
    """``int_low^high v(sigma) d sigma`` of the mixture written out per component: ``w_0 mu_0
    (high - low)`` and ``w_k mu_k (e^{r_k (s_src - low)} - e^{r_k (s_src - high)}) / r_k``;
    ``high``, ``low``: ``(B,)`` float64."""
    means, logits, rates = params
    w = torch.softmax(logits, dim=1)
    high, low = (v.view(-1, 1, 1, 1, 1) for v in (high, low))
    grown = (torch.exp(rates * (sigma_src - low)) - torch.exp(rates * (sigma_src - high))) / rates
    return w[:, 0] * means[:, 0] * (high - low)[:, 0] + (w[:, 1:] * means[:, 1:] * grown).sum(1)


def reference_imitation(params, frozen, x_src, tau_src, segment, rho_t, generator):
    """Method section 5 written out independently of arcflow (float64, no dropout, N_I = 2):
    states from ``frozen`` parameters (the rollout carries no gradient), predictions from
    ``params``. Returns the loss and the end state."""

    def sigma(tau):
        tau = tau.clamp(min=0.0)
        return SHIFT * tau / (1 + (SHIFT - 1) * tau)

    sigma_src = float(sigma(torch.tensor(tau_src)))
    n = max(round(segment * 128), 1)
    window = min(3 * segment / n, segment)
    batch = x_src.shape[0]
    # the draws, in imitate_segment's order: N_I student draws, N_I - 1 teacher cuts
    student_cuts = torch.rand(batch, 2, generator=generator, dtype=torch.float64)
    teacher_cut = torch.rand(batch, 1, generator=generator, dtype=torch.float64)
    student_pos = student_cuts.sort(dim=1).values * (1 - rho_t) * (segment - window)
    a = torch.stack([student_pos[:, 0], student_pos[:, 1] - student_pos[:, 0]], 1)
    b = torch.cat([teacher_cut, 1 - teacher_cut], 1) * rho_t * (segment - window)
    tau, x, terms = torch.full((batch,), tau_src, dtype=torch.float64), x_src, []
    for i in range(2):
        tau_a = (tau - a[:, i]).clamp(min=0)
        tau_b = (tau_a - b[:, i]).clamp(min=0)
        x_a = x - integral(frozen, sigma_src, sigma(tau), sigma(tau_a))
        u = curved_teacher(x_a, sigma(tau_a))
        s_a, s_e = sigma(tau_a), sigma(tau_b - window)
        prediction = integral(params, sigma_src, s_a, s_e) / (s_a - s_e).view(-1, 1, 1, 1)
        terms.append(((prediction - u) ** 2).mean())
        x = x_a + u * (sigma(tau_b) - s_a).view(-1, 1, 1, 1)
        tau = tau_b
    end = torch.full((batch,), tau_src - segment, dtype=torch.float64)
    x_end = x - integral(frozen, sigma_src, sigma(tau), sigma(end))
    return 15 * torch.stack(terms).mean(), x_end


@pytest.mark.parametrize("rho_t", [0.0, 0.4, 1.0])
def test_loss_and_gradient_match_a_written_out_reference(rho_t):
    """A student far from the teacher (non-zero means, uneven logits, spread rates): the loss, the
    end state and the gradient with respect to means, logits and log-rates (finite differences of
    the reference with the rollout held fixed) agree."""
    g = torch.Generator().manual_seed(11)
    b, k, c, h, w = 2, 3, 2, 2, 2
    params = (
        torch.randn(b, k, c, h, w, generator=g, dtype=torch.float64),
        torch.randn(b, k, 1, h, w, generator=g, dtype=torch.float64),
        torch.rand(b, k - 1, 1, h, w, generator=g, dtype=torch.float64) * 6 - 3,
    )
    x_src = torch.randn(b, c, h, w, generator=g, dtype=torch.float64)
    tau_src, segment = 1.0, 0.5
    cfg = ImitationConfig(num_intermediate_states=2, policy_dropout=0.0, shift=SHIFT)
    leaves = [p.clone().requires_grad_(True) for p in params]
    policy = ArcFlowPolicy(*leaves, float(warp_sigma(tau_src, SHIFT)))
    loss, x_end = imitate_segment(
        policy,
        x_src,
        tau_src,
        segment,
        curved_teacher,
        rho_t,
        cfg,
        torch.Generator().manual_seed(5),
    )
    loss.backward()

    def reference(p):
        gen = torch.Generator().manual_seed(5)
        return reference_imitation(p, params, x_src, tau_src, segment, rho_t, gen)

    expected_loss, expected_end = reference(params)
    assert expected_loss.item() > 1.0  # far from the teacher: gradients are not trivially zero
    torch.testing.assert_close(loss.double(), expected_loss, rtol=1e-6, atol=0)
    torch.testing.assert_close(x_end, expected_end, rtol=1e-6, atol=1e-8)
    pick = torch.Generator().manual_seed(0)
    for index, (param, leaf) in enumerate(zip(params, leaves)):
        assert leaf.grad.abs().max() > 1e-3
        for flat in torch.randint(param.numel(), (6,), generator=pick).tolist():
            step = 1e-6
            shifted = [p.clone() for p in params]
            shifted[index].view(-1)[flat] += step
            up = reference(shifted)[0]
            shifted[index].view(-1)[flat] -= 2 * step
            down = reference(shifted)[0]
            numeric = float(up - down) / (2 * step)
            assert leaf.grad.view(-1)[flat].item() == pytest.approx(numeric, rel=1e-5, abs=1e-8)
