"""Metrics on inputs with known answers: Fréchet distance of Gaussians, PSNR, MSE, diversity, the
Wilson interval of a rate."""

import math

import pytest
import torch

from arcflow.evaluation.metrics import (
    PSNR_CAP_DB,
    FeatureStats,
    diversity,
    feature_statistics,
    frechet_distance,
    frechet_distance_from_stats,
    latent_mse,
    mean_interval,
    pairwise_distances,
    psnr,
    ratio_interval,
    wilson_interval,
)


def features(n: int = 400, d: int = 6, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=gen, dtype=torch.float64)
    return torch.randn(n, d, generator=gen, dtype=torch.float64) @ mix + 3.0


def rotation(d: int, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64)).Q


def test_a_set_against_itself_is_zero():
    x = features()
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)


def test_a_shifted_set_costs_exactly_the_squared_shift():
    # Shifting leaves the covariance unchanged, so d^2 = |shift|^2 with no sampling error.
    x = features()
    shift = torch.tensor([1.0, -2.0, 0.5, 0.0, 0.0, 3.0], dtype=torch.float64)
    distance = frechet_distance(x, x + shift)
    assert distance > 0
    assert distance == pytest.approx(float(shift.square().sum()), rel=1e-9)


def test_a_scaled_set_matches_the_closed_form():
    # cov -> c^2 S and mean -> c mu: d^2 = (1 - c)^2 (|mu|^2 + Tr S).
    x, c = features(), 1.7
    stats = feature_statistics(x)
    expected = (1 - c) ** 2 * (float(stats.mean.square().sum()) + float(stats.cov.trace()))
    assert frechet_distance(x, c * x) == pytest.approx(expected, rel=1e-9)


def test_gaussians_with_known_means_and_covariances():
    # Covariances sharing eigenvectors: d^2 = |mu_a - mu_b|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2.
    d = 5
    q = rotation(d)
    var_a = torch.tensor([1.0, 2.0, 0.5, 4.0, 0.0], dtype=torch.float64)  # one singular direction
    var_b = torch.tensor([3.0, 1.0, 0.5, 1.0, 2.0], dtype=torch.float64)
    mean_a = torch.zeros(d, dtype=torch.float64)
    mean_b = torch.arange(d, dtype=torch.float64)
    a = FeatureStats(mean_a, q @ torch.diag(var_a) @ q.T, 100)
    b = FeatureStats(mean_b, q @ torch.diag(var_b) @ q.T, 100)
    expected = float(
        (mean_a - mean_b).square().sum() + (var_a.sqrt() - var_b.sqrt()).square().sum()
    )
    # sqrt near a zero eigenvalue turns round-off of ~1e-16 into ~1e-8
    assert frechet_distance_from_stats(a, b) == pytest.approx(expected, abs=1e-7)
    assert frechet_distance_from_stats(b, a) == pytest.approx(expected, abs=1e-7)


def test_non_commuting_covariances_agree_with_scipy_sqrtm():
    linalg = pytest.importorskip("scipy.linalg")
    a, b = feature_statistics(features(seed=2)), feature_statistics(features(seed=3))
    root = linalg.sqrtm(a.cov.numpy() @ b.cov.numpy())
    expected = float(
        (a.mean - b.mean).square().sum() + a.cov.trace() + b.cov.trace() - 2 * root.real.trace()
    )
    assert frechet_distance_from_stats(a, b) == pytest.approx(expected, rel=1e-8)


def test_psnr_of_identical_images_is_capped():
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(psnr(x, x), torch.full((3,), PSNR_CAP_DB, dtype=torch.float64))
    assert psnr(x, x, cap_db=60.0).tolist() == [60.0] * 3


def test_psnr_of_known_noise_matches_the_formula():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 16, 16, generator=gen)
    noise = 0.05 * torch.randn(x.shape, generator=gen)
    mse = noise.double().flatten(1).square().mean(1)
    assert torch.allclose(latent_mse(x + noise, x), mse)
    assert torch.allclose(psnr(x + noise, x), 10 * torch.log10(1.0 / mse))
    # data range 255: the same relative error, the same PSNR
    assert torch.allclose(psnr(255 * (x + noise), 255 * x, data_range=255.0), psnr(x + noise, x))
    # a constant error of 0.1 on [0, 1] images is 20 dB
    assert psnr(x + 0.1, x).tolist() == pytest.approx([20.0, 20.0])


def test_diversity_is_the_mean_pairwise_distance():
    # Three seeds at the corners of a 3-4-5 right triangle: pairs 3, 4, 5.
    one_prompt = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    assert diversity(one_prompt) == pytest.approx(4.0)
    # Two prompts: a collapsed one (0) and the triangle (4) average to 2.
    collapsed = torch.ones(3, 2)
    assert diversity(torch.stack([collapsed, one_prompt])) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        diversity(torch.zeros(1, 2))


def test_pairwise_distances_are_paired_by_seed_pair():
    triangle = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    # Pairs (0, 1), (0, 2), (1, 2) in that order.
    assert pairwise_distances(triangle).tolist() == pytest.approx([3.0, 4.0, 5.0])
    assert pairwise_distances(triangle).mean() == pytest.approx(diversity(triangle))
    with pytest.raises(ValueError, match="S >= 2"):
        pairwise_distances(torch.zeros(1, 3))


def test_ratio_interval_matches_a_bootstrap_of_the_prompts():
    """The delta-method interval of a ratio of paired means against an independent estimate: the
    spread of the ratio over 20000 resamples of the prompts (with replacement)."""
    gen = torch.Generator().manual_seed(3)
    teacher = 2.0 + torch.rand(300, generator=gen, dtype=torch.float64)  # per-prompt diversity
    student = 0.8 * teacher + 0.3 * torch.randn(300, generator=gen, dtype=torch.float64)
    ratio, half = ratio_interval(student, teacher)
    assert ratio == pytest.approx(student.mean().item() / teacher.mean().item(), rel=1e-12)
    picks = torch.randint(0, 300, (20000, 300), generator=gen)
    resampled = student[picks].mean(1) / teacher[picks].mean(1)
    assert half == pytest.approx(1.959963984540054 * resampled.std().item(), rel=0.05)
    # A student exactly proportional to the teacher has no doubt about its ratio.
    assert ratio_interval(0.5 * teacher, teacher) == pytest.approx((0.5, 0.0), abs=1e-12)


def test_ratio_interval_edge_cases():
    one_image_for_all_seeds = torch.zeros(5, dtype=torch.float64)
    assert ratio_interval(one_image_for_all_seeds, torch.ones(5)) == (0.0, 0.0)
    assert math.isnan(ratio_interval(torch.ones(3), torch.zeros(3))[0])  # collapsed reference
    ratio, half = ratio_interval(torch.tensor([2.0]), torch.tensor([4.0]))
    assert ratio == 0.5 and math.isnan(half)
    with pytest.raises(ValueError, match="as many values"):
        ratio_interval(torch.ones(3), torch.ones(4))


@pytest.mark.parametrize("successes,trials", [(169, 200), (0, 12), (12, 12), (861, 1000), (1, 3)])
def test_wilson_interval_matches_scipy(successes, trials):
    from scipy.stats import binomtest

    expected = binomtest(successes, trials).proportion_ci(0.95, method="wilson")
    low, high = wilson_interval(successes, trials)
    assert low == pytest.approx(expected.low, abs=1e-9)
    assert high == pytest.approx(expected.high, abs=1e-9)
    assert 0 <= low <= successes / trials <= high <= 1


def test_wilson_interval_narrows_with_more_images_and_rejects_bad_counts():
    widths = [high - low for low, high in (wilson_interval(85 * k, 100 * k) for k in (1, 4, 16))]
    # The width falls as 1 / sqrt(n): a quarter of it at 16x the images.
    assert widths[0] > widths[1] > widths[2]
    assert widths[2] == pytest.approx(widths[0] / 4, rel=0.02)
    for successes, trials in ((3, 2), (-1, 5), (0, 0)):
        with pytest.raises(ValueError, match="successes <= trials"):
            wilson_interval(successes, trials)


def test_shape_errors_are_loud():
    with pytest.raises(ValueError):
        frechet_distance(torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError):
        psnr(torch.zeros(1, 3), torch.zeros(1, 4))
    assert math.isfinite(frechet_distance(torch.zeros(4, 3), torch.zeros(5, 3)))


def test_mean_interval_matches_scipy():
    """The mean +- z s / sqrt(n) of scipy's normal interval for a mean (scale = standard error)."""
    from scipy.stats import norm, sem

    values = torch.tensor([27.1, 30.4, 25.9, 28.8, 31.2, 26.5, 29.0])
    mean, half = mean_interval(values)
    low, high = norm.interval(0.95, loc=values.double().mean().item(), scale=sem(values.numpy()))
    assert mean == pytest.approx((low + high) / 2, rel=1e-12)
    assert half == pytest.approx((high - low) / 2, rel=1e-6)
    assert math.isnan(mean_interval(torch.tensor([3.0]))[1])
    with pytest.raises(ValueError, match="at least one"):
        mean_interval(torch.tensor([]))
