"""A tiny-world-shaped FLUX stack with random weights (64x64 images, 16x16x16 latents, the
shipped architectures), its ArcFlow and linear (K = 1) adapters, and a random attribute
evaluator, all on disk like the shipped checkpoints; and tools/evaluate.py."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
import torch
from tiny_models import tiny_world_model

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class TinyWorldStack:
    model: Path
    adapter: Path
    linear: Path | None
    evaluator: Path | None


def build_tiny_world_stack(root: Path, arch: str, full: bool) -> TinyWorldStack:
    """Model and ArcFlow adapter; with ``full`` also a linear adapter and an evaluator."""
    from diffusers import FluxTransformer2DModel, QwenImageTransformer2DModel

    from arcflow.models import ArcFlowStudent, save_arcflow_adapter
    from arcflow.tinyworld.evaluator import AttributeEvaluator

    cls = FluxTransformer2DModel if arch == "flux" else QwenImageTransformer2DModel
    model = tiny_world_model(root / f"tiny-{arch}", arch)
    folders: dict[str, Path | None] = {"linear": None}
    for name, k in (("arcflow", 4), ("linear", 1))[: 2 if full else 1]:
        base = cls.from_pretrained(model / "transformer").eval()
        student = ArcFlowStudent(base, arch, num_components=k, lora_rank=2, lora_alpha=2)
        # Move the heads off the teacher's initialisation: students that differ from the teacher
        # (and from each other) make the agreement columns non-trivial.
        gen = torch.Generator().manual_seed(k)
        with torch.no_grad():
            for _, param in student.trainable_named_parameters():
                param.add_(torch.randn(param.shape, generator=gen) * 0.02)
        folders[name] = save_arcflow_adapter(student, root / f"tiny-{arch}-{name}")
    evaluator = None
    if full:
        evaluator = root / "tiny-evaluator"
        AttributeEvaluator().eval().save_pretrained(evaluator)
    return TinyWorldStack(model, folders["arcflow"], folders["linear"], evaluator)


@pytest.fixture(scope="session")
def tiny_world_stack(tmp_path_factory: pytest.TempPathFactory) -> TinyWorldStack:
    """FLUX with ArcFlow and linear adapters and a random attribute evaluator."""
    return build_tiny_world_stack(tmp_path_factory.mktemp("tiny_world_flux"), "flux", full=True)


@pytest.fixture(scope="session")
def tiny_world_qwen(tmp_path_factory: pytest.TempPathFactory) -> TinyWorldStack:
    """Qwen-Image with an ArcFlow adapter."""
    root = tmp_path_factory.mktemp("tiny_world_qwen")
    return build_tiny_world_stack(root, "qwen_image", full=False)


@pytest.fixture(scope="session")
def evaluate_tool() -> ModuleType:
    """``tools/evaluate.py`` as a module (tools/ is not a package)."""
    if "evaluate_tool" not in sys.modules:
        spec = importlib.util.spec_from_file_location("evaluate_tool", ROOT / "tools/evaluate.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["evaluate_tool"] = module
        spec.loader.exec_module(module)
    return sys.modules["evaluate_tool"]
