"""ArcFlow: few-step text-to-image generation by non-linear flow distillation."""

__version__ = "0.1.0"
