"""The closed-form integrator against independent computations."""

import math

import pytest
import torch

from arcflow.flow import ArcFlowPolicy, phi


def random_policy(b=2, k=5, c=3, spatial=(4, 4), rate_scale=8.0, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(b, k, c, *spatial, generator=g, dtype=dtype)
    logits = torch.randn(b, k, 1, *spatial, generator=g, dtype=dtype)
    rates = (torch.rand(b, k - 1, 1, *spatial, generator=g, dtype=dtype) * 2 - 1) * rate_scale
    sigma_src = torch.rand(b, generator=g, dtype=dtype) * 0.5 + 0.5
    return ArcFlowPolicy(means, logits, rates, sigma_src)


def simpson(f, a: float, b: float, n: int = 2000) -> torch.Tensor:
    """Composite Simpson rule of a tensor-valued f over [b, a], a > b (error O(h^4))."""
    s = torch.linspace(a, b, 2 * n + 1, dtype=torch.float64)
    values = torch.stack([f(float(t)) for t in s])
    w = torch.ones(2 * n + 1, dtype=torch.float64)
    w[1:-1:2], w[2:-1:2] = 4, 2
    shape = (-1,) + (1,) * (values.ndim - 1)
    return (w.view(shape) * values).sum(0) * (a - b) / (6 * n)


def test_phi_values_and_series_junction():
    z = torch.tensor([-30.0, -1.0, -1e-3, -1e-9, 0.0, 1e-9, 1e-3, 0.3, 5.0], dtype=torch.float64)
    exact = [math.expm1(t) / t if t != 0 else 1.0 for t in z.tolist()]
    torch.testing.assert_close(phi(z), torch.tensor(exact, dtype=torch.float64), rtol=1e-13, atol=0)
    # value and slope continuous across the series threshold, for both dtypes
    for dtype, atol in ((torch.float64, 1e-12), (torch.float32, 5e-6)):
        zz = torch.tensor(
            [-0.06, -0.05, -0.0499, -1e-3, -1e-4, 1e-4, 1e-3, 0.0499, 0.05], dtype=dtype
        )
        zz.requires_grad_(True)
        phi(zz).sum().backward()
        ref = zz.detach().double()
        # phi'(z) = sum_{n >= 1} n z^(n-1) / (n+1)!, summed far past float64 precision
        slope = sum(n * ref ** (n - 1) / math.factorial(n + 1) for n in range(1, 20))
        torch.testing.assert_close(zz.grad.double(), slope, rtol=0, atol=atol)


def test_phi_gradient_at_zero_is_one_half():
    z = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    phi(z).sum().backward()
    torch.testing.assert_close(z.grad, torch.full((3,), 0.5, dtype=torch.float64))


@pytest.mark.parametrize("steps", [(0.95, 0.4), (0.6, 0.6 - 1e-7), (0.5, 0.0), (0.3, 0.299)])
def test_closed_form_matches_numerical_integral(steps):
    policy = random_policy()
    sigma_a, sigma_b = steps
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    integral = simpson(policy.velocity, sigma_a, sigma_b)
    expected = x - integral
    moved = policy.move(x, sigma_a, sigma_b)
    # relative to the size of the displacement
    err = (moved - expected).abs().max() / integral.abs().max()
    assert err <= 1e-6, err


def test_closed_form_with_rates_exactly_zero():
    policy = random_policy(rate_scale=0.0)
    assert (policy.log_rates == 0).all()
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    expected = x - 0.5 * policy.velocity(0.9)  # constant velocity when every rate is 0
    torch.testing.assert_close(policy.move(x, 0.9, 0.4), expected, rtol=1e-12, atol=1e-12)


def test_mean_velocity_limit_is_local_velocity():
    policy = random_policy()
    torch.testing.assert_close(policy.mean_velocity(0.7, 0.7), policy.velocity(0.7))
    close = policy.mean_velocity(0.7, 0.7 - 1e-9)
    torch.testing.assert_close(close, policy.velocity(0.7), rtol=1e-6, atol=1e-6)


def test_moves_compose():
    policy = random_policy(rate_scale=4.0)
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    a, b, c = 0.9, 0.55, 0.1
    direct = policy.move(x, a, c)
    chained = policy.move(policy.move(x, a, b), b, c)
    torch.testing.assert_close(chained, direct, rtol=1e-12, atol=1e-12)


def test_per_sample_sigmas():
    policy = random_policy()
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    sigma_from = torch.tensor([0.9, 0.6], dtype=torch.float64)
    sigma_to = torch.tensor([0.2, 0.5], dtype=torch.float64)
    batched = policy.move(x, sigma_from, sigma_to)
    for i in range(2):
        single = ArcFlowPolicy(
            policy.velocity_means[i : i + 1],
            policy.logits[i : i + 1],
            policy.log_rates[i : i + 1],
            policy.sigma_src[i : i + 1],
        )
        expected = single.move(x[i : i + 1], float(sigma_from[i]), float(sigma_to[i]))
        torch.testing.assert_close(batched[i : i + 1], expected)


def test_gradcheck_move_including_rates_near_zero():
    g = torch.Generator().manual_seed(1)
    b, k, c, h, w = 2, 3, 2, 2, 2
    means = torch.randn(b, k, c, h, w, generator=g, dtype=torch.float64, requires_grad=True)
    logits = torch.randn(b, k, 1, h, w, generator=g, dtype=torch.float64, requires_grad=True)
    rates = torch.randn(b, k - 1, 1, h, w, generator=g, dtype=torch.float64) * 3
    rates[0, 0] = 1e-9  # r * h well inside the series branch
    rates[1, 1] = 0.0
    rates[1, 0] = 2e-3 / 0.45  # r * h right at the series threshold
    rates.requires_grad_(True)
    x = torch.randn(b, c, h, w, generator=g, dtype=torch.float64)
    sigma_src = torch.tensor([0.9, 0.8], dtype=torch.float64)

    def f(mu, l, r):
        return ArcFlowPolicy(mu, l, r, sigma_src).move(x, 0.75, 0.3)

    assert torch.autograd.gradcheck(f, (means, logits, rates), eps=1e-6, atol=1e-7)


def test_half_precision_inputs_give_float32_answer():
    policy64 = random_policy(rate_scale=2.0)
    parts = [policy64.velocity_means, policy64.logits, policy64.log_rates]
    bf16 = [t.to(torch.bfloat16) for t in parts]
    ref = ArcFlowPolicy(*[t.float() for t in bf16], policy64.sigma_src.float())
    half = ArcFlowPolicy(*bf16, policy64.sigma_src)
    x = torch.randn(2, 3, 4, 4)
    assert half.velocity(0.5).dtype == torch.float32
    torch.testing.assert_close(half.velocity(0.5), ref.velocity(0.5), rtol=0, atol=0)
    torch.testing.assert_close(half.move(x, 0.8, 0.2), ref.move(x, 0.8, 0.2), rtol=0, atol=0)
    assert half.move(x.bfloat16(), 0.8, 0.2).dtype == torch.bfloat16
    assert policy64.move(x.double(), 0.8, 0.2).dtype == torch.float64


@pytest.mark.parametrize("log_rates_none", [True, False])
def test_single_component_is_euler(log_rates_none):
    means = torch.randn(2, 1, 3, 4, 4, dtype=torch.float64)
    logits = torch.randn(2, 1, 1, 4, 4, dtype=torch.float64)
    rates = None if log_rates_none else torch.zeros(2, 0, 1, 4, 4, dtype=torch.float64)
    policy = ArcFlowPolicy(means, logits, rates, 1.0)
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    expected = x + (0.2 - 0.9) * means[:, 0]
    torch.testing.assert_close(policy.move(x, 0.9, 0.2), expected, rtol=1e-14, atol=1e-14)


def test_video_layout():
    b, k, c, t, h, w = 1, 3, 2, 3, 4, 4
    policy = ArcFlowPolicy(
        torch.randn(b, k, c, t, h, w, dtype=torch.float64),
        torch.randn(b, k, 1, t, h, w, dtype=torch.float64),
        torch.randn(b, k - 1, 1, t, h, w, dtype=torch.float64),
        0.9,
    )
    x = torch.randn(b, c, t, h, w, dtype=torch.float64)
    moved = policy.move(x, 0.9, 0.3)
    assert moved.shape == x.shape
    integral = simpson(policy.velocity, 0.9, 0.3, n=500)
    torch.testing.assert_close(moved, x - integral, rtol=1e-7, atol=1e-9)


def test_dropout_drops_whole_components_never_all():
    policy = random_policy(b=64, k=4)
    g = torch.Generator().manual_seed(0)
    dropped = policy.dropout(0.9, generator=g)
    finite = torch.isfinite(dropped.logits)  # (B, K, 1, H, W)
    per_component = finite.flatten(2)
    # a component is dropped everywhere in its sample or nowhere
    assert (per_component.all(-1) == per_component.any(-1)).all()
    kept = per_component.all(-1)
    assert kept.any(dim=1).all(), "a sample lost every component"
    assert (~kept).any(), "p = 0.9 dropped nothing"
    torch.testing.assert_close(dropped.logits[finite], policy.logits[finite])
    assert torch.isfinite(
        dropped.move(torch.zeros(64, 3, 4, 4, dtype=torch.float64), 0.9, 0.1)
    ).all()
    # seeded: the same generator state gives the same mask
    again = policy.dropout(0.9, generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.isfinite(again.logits), finite)
    assert policy.dropout(0.0) is policy


def test_dropout_rate_is_p():
    policy = random_policy(b=4000, k=8, spatial=(1, 1))
    dropped = policy.dropout(0.1, generator=torch.Generator().manual_seed(3))
    rate = (~torch.isfinite(dropped.logits)).double().mean().item()
    assert abs(rate - 0.1) < 0.01


def test_detach():
    policy = random_policy()
    policy.velocity_means.requires_grad_(True)
    assert policy.velocity(0.5).requires_grad
    assert not policy.detach().velocity(0.5).requires_grad


@pytest.mark.parametrize(
    "make, match",
    [
        (
            lambda: ArcFlowPolicy(
                torch.zeros(1, 3, 2, 4, 4), torch.zeros(1, 2, 1, 4, 4), None, 0.5
            ),
            "logits",
        ),
        (
            lambda: ArcFlowPolicy(
                torch.zeros(1, 3, 2, 4, 4),
                torch.zeros(1, 3, 1, 4, 4),
                torch.zeros(1, 3, 1, 4, 4),
                0.5,
            ),
            "log_rates",
        ),
        (
            lambda: ArcFlowPolicy(torch.zeros(3, 2, 4, 4), torch.zeros(3, 1, 4, 4), None, 0.5),
            "velocity_means",
        ),
        (
            lambda: ArcFlowPolicy(
                torch.zeros(1, 1, 2, 4, 4), torch.zeros(1, 1, 1, 4, 4), None, 1.5
            ),
            "sigma_src",
        ),
        (
            lambda: ArcFlowPolicy(
                torch.zeros(2, 1, 2, 4, 4), torch.zeros(2, 1, 1, 4, 4), None, torch.ones(3)
            ),
            "sigma_src",
        ),
    ],
)
def test_bad_shapes_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_sigmas_raise():
    policy = random_policy()
    x = torch.zeros(2, 3, 4, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="sigma_to must be <= sigma_from"):
        policy.move(x, 0.2, 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        policy.move(x, 1.2, 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        policy.velocity(-0.1)
    with pytest.raises(ValueError, match="latent shape"):
        policy.move(torch.zeros(2, 3, 5, 5), 0.5, 0.2)
