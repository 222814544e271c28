"""Metrics and the benchmark harness; the tiny world's attribute evaluator."""

from arcflow.evaluation.attributes import AttributeEvaluator, AttributeScore, degrade

__all__ = ["AttributeEvaluator", "AttributeScore", "degrade"]

# Sample-quality metrics (Fréchet distance, PSNR, latent MSE, diversity).
from arcflow.evaluation.metrics import (  # noqa: E402
    FeatureStats,
    diversity,
    feature_statistics,
    frechet_distance,
    frechet_distance_from_stats,
    latent_mse,
    psnr,
)

__all__ += [
    "FeatureStats",
    "diversity",
    "feature_statistics",
    "frechet_distance",
    "frechet_distance_from_stats",
    "latent_mse",
    "psnr",
]
