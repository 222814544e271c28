"""Metrics, the evaluation harness (scorers plug in through ``CaptionScorer`` and
``FeatureSpace``) and the trajectory probe."""

# Sample-quality metrics (Fréchet distance, PSNR, latent MSE, diversity).
from arcflow.evaluation.metrics import (
    FeatureStats,
    diversity,
    feature_statistics,
    frechet_distance,
    frechet_distance_from_stats,
    latent_mse,
    psnr,
)

__all__ = [
    "FeatureStats",
    "diversity",
    "feature_statistics",
    "frechet_distance",
    "frechet_distance_from_stats",
    "latent_mse",
    "psnr",
]

# The evaluation harness: every sampler from the same noise, side by side (tools/evaluate.py).
from arcflow.evaluation.features import FeatureSpace  # noqa: E402
from arcflow.evaluation.harness import (  # noqa: E402
    CaptionScorer,
    CaptionScores,
    EvaluationResult,
    GenerationStack,
    SamplerResult,
    SamplerSpec,
    evaluate,
    load_stack,
    parse_samplers,
    stack_from_pipeline,
)
from arcflow.evaluation.report import write_report  # noqa: E402

__all__ += [
    "CaptionScorer",
    "CaptionScores",
    "EvaluationResult",
    "FeatureSpace",
    "GenerationStack",
    "SamplerResult",
    "SamplerSpec",
    "evaluate",
    "parse_samplers",
    "load_stack",
    "stack_from_pipeline",
    "write_report",
]

# The trajectory probe: each sampler's distance to the teacher's path inside each step.
from arcflow.evaluation.trajectory import (  # noqa: E402
    ProbeRecord,
    ProbeResult,
    probe_batch,
    probe_trajectories,
    student_step,
    teacher_euler_step,
    teacher_path,
)

__all__ += [
    "ProbeRecord",
    "ProbeResult",
    "probe_batch",
    "probe_trajectories",
    "student_step",
    "teacher_euler_step",
    "teacher_path",
]
