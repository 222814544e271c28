"""The tools under test, loaded from tools/ (not a package), and a tiny FLUX stack on disk."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from tiny_models import tiny_world_model

ROOT = Path(__file__).resolve().parents[2]


def load_tool(name: str) -> ModuleType:
    """``tools/<name>.py`` as module ``name``."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def bench_tool() -> ModuleType:
    return load_tool("benchmark")


@pytest.fixture(scope="session")
def probe_tool() -> ModuleType:
    return load_tool("probe_captions")


@pytest.fixture(scope="session")
def gpu_check() -> ModuleType:
    return load_tool("gpu_check")


@pytest.fixture(scope="session")
def trajectory() -> ModuleType:
    return load_tool("plot_trajectory")


@pytest.fixture(scope="session")
def curves() -> ModuleType:
    return load_tool("plot_training_curves")


@pytest.fixture(scope="session")
def tiny_flux_stack(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny FLUX pipeline folder (random weights) and an ArcFlow adapter folder for it."""
    from diffusers import FluxTransformer2DModel

    from arcflow.models import ArcFlowStudent, save_arcflow_adapter

    root = tmp_path_factory.mktemp("tiny_flux_stack")
    model = tiny_world_model(root / "tiny-flux", "flux")
    transformer = FluxTransformer2DModel.from_pretrained(model / "transformer").eval()
    student = ArcFlowStudent(transformer, "flux", num_components=4, lora_rank=2, lora_alpha=2)
    return model, save_arcflow_adapter(student, root / "tiny-flux-arcflow")


@pytest.fixture(scope="session")
def build_tool() -> ModuleType:
    return load_tool("build_tiny_world")
