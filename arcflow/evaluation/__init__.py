"""Metrics and the benchmark harness; the tiny world's attribute evaluator."""

from arcflow.evaluation.attributes import AttributeEvaluator, AttributeScore, degrade

__all__ = ["AttributeEvaluator", "AttributeScore", "degrade"]
