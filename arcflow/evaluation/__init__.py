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

# The evaluation harness: every sampler from the same noise, side by side (tools/evaluate.py).
from arcflow.evaluation.harness import (  # noqa: E402
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
    "EvaluationResult",
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
