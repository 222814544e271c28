"""Every config loads, names only known keys, and the released ones build on the meta device."""

import inspect
from pathlib import Path

import pytest

from arcflow.engine import ArcFlowFSDP
from arcflow.engine.launch import prepare_config
from arcflow.models.builder import build_student_from_cfg, count_parameters
from arcflow.models.distiller import ArcFlowDistiller

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted(
    str(p.relative_to(ROOT))
    for p in (ROOT / "configs").glob("*/*.py")
    if not p.name.startswith("_")
)


@pytest.mark.parametrize("config", CONFIGS)
def test_config_loads_with_known_keys(config, tmp_path):
    cfg = prepare_config(str(ROOT / config), work_dir=str(tmp_path))
    assert cfg.model["type"]
    assert cfg.default_hooks["checkpoint"] is None


@pytest.mark.parametrize(
    "config, arch, trainable_b, base_b",
    [
        ("configs/flux/arcflow_flux.py", "flux", 0.65, 11.9),
        ("configs/qwen/arcflow_qwen.py", "qwen_image", 0.96, 20.4),
    ],
)
def test_released_configs_build_on_meta(config, arch, trainable_b, base_b, tmp_path):
    cfg = prepare_config(str(ROOT / config), work_dir=str(tmp_path))
    model = dict(cfg.model)
    assert model.pop("type") == "ArcFlowDistiller"
    student = build_student_from_cfg(model.pop("student"), device="meta")
    model.pop("prompt_encoder")
    distiller = ArcFlowDistiller(student=student, **model)
    assert distiller.nfe == 2 and distiller.imitation.loss_scale == 15.0
    assert student.arch.name == arch and student.num_components == 16
    counts = count_parameters(student)
    assert counts.trainable / 1e9 == pytest.approx(trainable_b, abs=0.01)
    assert counts.frozen / 1e9 == pytest.approx(base_b, abs=0.1)
    optim = cfg.optim_wrapper
    assert optim.optimizer["lr"] == 1e-4 and optim.optimizer["betas"] == (0.9, 0.95)
    assert optim.paramwise_cfg["lr_mult"] == {"log_rates": 0.1}
    assert optim.clip_grad == {"max_norm": 50.0} and optim.clip_grad_from_iter == 100


@pytest.mark.parametrize(
    "config", ["configs/flux/arcflow_flux_fsdp.py", "configs/qwen/arcflow_qwen_fsdp.py"]
)
def test_fsdp_variant_replaces_the_ddp_wrapper(config, tmp_path):
    cfg = prepare_config(str(ROOT / config), work_dir=str(tmp_path))
    wrapper = dict(cfg.model_wrapper_cfg)
    assert wrapper.pop("type") == "ArcFlowFSDP"
    # Every other key is an argument of the wrapper: a typo fails here, not at launch.
    inspect.signature(ArcFlowFSDP).bind(module=None, **wrapper)
