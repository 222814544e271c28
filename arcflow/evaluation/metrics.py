"""Sample-quality metrics on feature sets, images and latents.

- Fréchet distance between two feature sets (FID when the features are Inception's; the tiny world
  uses its attribute evaluator's features):

      d^2 = |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2)

  The trace of the matrix square root is computed from the symmetric PSD product
  ``S_a^1/2 S_b S_a^1/2`` with ``torch.linalg.eigh`` in float64: its eigenvalues are those of
  ``S_a S_b``, so the trace equals pytorch-fid's ``Tr(sqrtm(S_a S_b))``, without the complex
  round-off clean-up and singular-product failures of a general ``scipy.linalg.sqrtm``, and with
  no scipy dependency.
- PSNR between images, capped for identical images (documented below).
- Per-sample latent MSE.
- Diversity: mean pairwise feature distance across the seeds of a prompt.
- Wilson score interval of a rate (caption match over N images).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# PSNR of identical images is +inf; reporting it capped keeps tables and means finite. 100 dB is
# far above any real disagreement (8-bit quantisation alone gives ~59 dB at data range 1).
PSNR_CAP_DB = 100.0


@dataclass(frozen=True)
class FeatureStats:
    """Gaussian summary of a feature set: ``mean`` (D,), ``cov`` (D, D), both float64."""

    mean: torch.Tensor
    cov: torch.Tensor
    count: int


def feature_statistics(features: torch.Tensor) -> FeatureStats:
    """Mean and unbiased covariance of ``features`` ``(N, D)``, N >= 2, in float64."""
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"features must be (N >= 2, D), got {tuple(features.shape)}")
    x = features.detach().to(torch.float64)
    mean = x.mean(dim=0)
    centred = x - mean
    cov = centred.T @ centred / (x.shape[0] - 1)
    return FeatureStats(mean, cov, x.shape[0])


def _psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric PSD matrix; tiny negative eigenvalues (round-off) become 0."""
    values, vectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def frechet_distance_from_stats(a: FeatureStats, b: FeatureStats) -> float:
    """``|mu_a - mu_b|^2 + Tr(S_a) + Tr(S_b) - 2 Tr((S_a^1/2 S_b S_a^1/2)^1/2)``, >= 0."""
    if a.mean.shape != b.mean.shape:
        raise ValueError(f"feature dimensions differ: {a.mean.shape} vs {b.mean.shape}")
    mean_term = (a.mean - b.mean).square().sum()
    root_a = _psd_sqrt(a.cov)
    product = root_a @ b.cov @ root_a
    cross = torch.linalg.eigvalsh((product + product.T) / 2).clamp(min=0).sqrt().sum()
    distance = mean_term + a.cov.trace() + b.cov.trace() - 2 * cross
    return max(float(distance), 0.0)


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """Fréchet distance between feature sets ``(N, D)`` and ``(M, D)``."""
    return frechet_distance_from_stats(
        feature_statistics(features_a), feature_statistics(features_b)
    )


def psnr(
    images: torch.Tensor,
    reference: torch.Tensor,
    data_range: float = 1.0,
    cap_db: float = PSNR_CAP_DB,
) -> torch.Tensor:
    """Per-image PSNR in dB, ``10 log10(data_range^2 / MSE)``, of ``(B, ...)`` vs ``reference``.

    Identical images (MSE = 0) give ``cap_db`` instead of +inf, and no image scores above it.

    Returns:
        ``(B,)`` float64.
    """
    if images.shape != reference.shape:
        raise ValueError(f"shapes differ: {tuple(images.shape)} vs {tuple(reference.shape)}")
    mse = latent_mse(images, reference)
    # The MSE at which PSNR reaches the cap: clamping to it avoids log10(0) = -inf.
    floor = data_range**2 * 10 ** (-cap_db / 10)
    return 10 * torch.log10(data_range**2 / mse.clamp(min=floor))


def latent_mse(latents: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-sample mean squared error of ``(B, ...)`` tensors: ``(B,)`` float64."""
    if latents.shape != reference.shape:
        raise ValueError(f"shapes differ: {tuple(latents.shape)} vs {tuple(reference.shape)}")
    diff = latents.detach().to(torch.float64) - reference.detach().to(torch.float64)
    return diff.flatten(1).square().mean(dim=1)


def diversity_per_prompt(features: torch.Tensor) -> torch.Tensor:
    """Mean pairwise Euclidean distance between the features of each prompt's seeds: ``(P,)``
    float64.

    Args:
        features: ``(S, D)`` for one prompt or ``(P, S, D)`` for P prompts, S >= 2 seeds each;
            each prompt's mean runs over its ``S (S - 1) / 2`` pairs.
    """
    if features.ndim == 2:
        features = features.unsqueeze(0)
    if features.ndim != 3 or features.shape[1] < 2:
        raise ValueError(f"features must be (S >= 2, D) or (P, S >= 2, D), got {features.shape}")
    x = features.detach().to(torch.float64)
    seeds = x.shape[1]
    # Exact differences, not the |a|^2 + |b|^2 - 2ab expansion that loses close pairs to round-off.
    distances = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")  # (P, S, S)
    pairs = seeds * (seeds - 1)  # ordered pairs: each unordered pair counted twice
    return distances.sum(dim=(1, 2)).div(pairs)


def diversity(features: torch.Tensor) -> float:
    """:func:`diversity_per_prompt` averaged over the prompts."""
    return float(diversity_per_prompt(features).mean())


def pairwise_distances(features: torch.Tensor) -> torch.Tensor:
    """The ``S (S - 1) / 2`` distances between the rows of ``(S, D)`` features, pair (i, j) with
    i < j in row-major order: ``(S (S - 1) / 2,)`` float64. Two samplers' features of the same
    seeds give paired distances (pair k of both is the same two seeds)."""
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"features must be (S >= 2, D), got {tuple(features.shape)}")
    x = features.detach().to(torch.float64)
    i, j = torch.triu_indices(len(x), len(x), offset=1)
    return (x[i] - x[j]).norm(dim=1)


# The two-sided 95 % quantile of the standard normal.
Z_95 = 1.959963984540054


def mean_interval(values: torch.Tensor, z: float = Z_95) -> tuple[float, float]:
    """The mean of ``values`` (one per image) and the half-width of its 95 % interval (at the
    default z) in the normal approximation, ``z * s / sqrt(n)`` with ``s`` the sample standard
    deviation: ``mean +- half``. One value has no spread to measure: half-width NaN."""
    x = values.detach().flatten().to(torch.float64)
    if x.numel() == 0:
        raise ValueError("mean_interval needs at least one value")
    half = z * x.std(correction=1).item() / math.sqrt(x.numel()) if x.numel() > 1 else math.nan
    return x.mean().item(), half


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a binomial rate ``successes / trials`` (95 % at the default z):

        centre = (p + z^2 / 2n) / (1 + z^2 / n)
        half   = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / 4n^2)

    Unlike the normal approximation ``p +- z sqrt(p (1 - p) / n)`` it stays inside [0, 1] and does
    not shrink to a point at p = 0 or 1, which matters for the near-perfect rates of good
    samplers. At 200 images and p = 0.85 it spans about +-5 points: differences of a point or two
    between two such runs are noise.
    """
    if trials <= 0 or not 0 <= successes <= trials:
        raise ValueError(
            f"need 0 <= successes <= trials and trials > 0, got {successes} / {trials}"
        )
    p = successes / trials
    scale = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / scale
    half = z / scale * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    # The bounds are exactly p at p = 0 and 1; the clamps keep round-off from stepping past it.
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def ratio_interval(
    values: torch.Tensor, reference: torch.Tensor, z: float = Z_95
) -> tuple[float, float]:
    """The ratio of means ``R = mean(values) / mean(reference)`` of paired samples (value i and
    reference i measured on the same prompt) and the half-width of its 95 % interval (at the
    default z) by the delta method:

        Var(R) ~= var(values - R * reference) / (n * mean(reference)^2)

    which is the first-order error of a ratio estimator; the pairing cancels whatever the two share
    (e.g. a prompt that is varied under every sampler). Relative diversity uses it with per-prompt
    diversities: 1.0 is as varied as the reference, 0 one image for every seed. A zero reference
    mean has no ratio (NaN); one pair has no spread to measure (half-width NaN).
    """
    a = values.detach().flatten().to(torch.float64)
    b = reference.detach().flatten().to(torch.float64)
    if a.numel() == 0 or a.shape != b.shape:
        raise ValueError(
            f"need as many values as reference values (at least one), got {a.numel()} and "
            f"{b.numel()}"
        )
    mean_b = b.mean().item()
    if mean_b == 0:
        return math.nan, math.nan
    ratio = a.mean().item() / mean_b
    if a.numel() < 2:
        return ratio, math.nan
    residual = a - ratio * b
    return ratio, z * residual.std(correction=1).item() / (math.sqrt(a.numel()) * abs(mean_b))
