"""Every config loads, names only known keys, and the released ones build on the meta device."""

import inspect
import math
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.model import BaseModel
from mmengine.runner import Runner

from arcflow.engine import ArcFlowFSDP
from arcflow.engine.launch import prepare_config
from arcflow.models.builder import build_student_from_cfg, count_parameters
from arcflow.models.distiller import ArcFlowDistiller

ROOT = Path(__file__).resolve().parents[2]
# Every config a user or the tiny world's build runs; partials live in folders named "_base_".
CONFIGS = sorted(
    str(p.relative_to(ROOT))
    for p in (ROOT / "configs").rglob("*.py")
    if not any(part.startswith("_") for part in p.relative_to(ROOT / "configs").parts)
)
TINY_RUNTIME = ROOT / "configs" / "tiny" / "_base_" / "runtime.py"


@pytest.mark.parametrize("config", CONFIGS)
def test_config_loads_with_known_keys(config, tmp_path):
    cfg = prepare_config(str(ROOT / config), work_dir=str(tmp_path))
    assert cfg.model["type"]
    assert cfg.default_hooks["checkpoint"] is None
    # A restated cosine whose ``end`` is not the run's length would stop decaying early or never
    # reach eta_min: stage configs set ``train_cfg.max_iters`` alone.
    for scheduler in cfg.param_scheduler:
        if scheduler["type"] == "CosineAnnealingLR":
            assert scheduler.get("end", cfg.train_cfg.max_iters) == cfg.train_cfg.max_iters


@pytest.mark.parametrize(
    "config, arch, trainable_b, base_b",
    [
        ("configs/flux/arcflow_flux.py", "flux", 0.65, 11.9),
        ("configs/qwen/arcflow_qwen.py", "qwen_image", 0.96, 20.4),
        ("configs/qwen/arcflow_qwen_2512.py", "qwen_image", 0.96, 20.4),
        ("configs/flux_kontext/arcflow_flux_kontext.py", "flux_kontext", 0.65, 11.9),
        ("configs/flux2/arcflow_flux2_klein.py", "flux2_klein", 0.19, 3.88),
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


class _Scalar(BaseModel):
    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(()))

    def forward(self, inputs, mode="loss"):
        return {"loss": (self.weight * inputs).square().mean()}


def test_tiny_cosine_ends_at_the_runs_own_max_iters(tmp_path):
    """The tiny runtime's cosine leaves ``end`` unset; the Runner ends it at train_cfg.max_iters,
    so in a stage that only sets its length the cosine spans the whole run."""
    cfg = Config.fromfile(TINY_RUNTIME)
    runner = Runner(
        model=_Scalar(),
        work_dir=str(tmp_path),
        train_dataloader=dict(
            dataset=[{"inputs": torch.ones(1)}] * 4,
            batch_size=1,
            sampler=dict(type="InfiniteSampler", shuffle=False),
            collate_fn=dict(type="default_collate"),
        ),
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.1)),
        param_scheduler=cfg.param_scheduler,
        train_cfg=dict(by_epoch=False, max_iters=70, val_interval=10**9),
        default_hooks=dict(checkpoint=None, logger=None),
        # the project's scope: a Runner makes its scope the current one for later builds
        default_scope=cfg.default_scope,
    )
    runner.train()
    cosine = runner.param_schedulers[-1]
    assert type(cosine).__name__ == "CosineAnnealingLR"
    assert cosine.end == 70
    # After the last iteration the cosine is one of its 20 steps short of eta_min (0.05 x lr):
    # eta_min + (lr - eta_min) (1 + cos(pi 19 / 20)) / 2.
    expected = 0.005 + 0.095 * (1 + math.cos(math.pi * 19 / 20)) / 2
    assert runner.optim_wrapper.get_lr()["lr"][0] == pytest.approx(expected)


def test_qwen_image_2512_reads_its_own_weights_everywhere(tmp_path):
    """The 2512 config changes only where the weights come from: transformer and text encoders
    both from the 2512 repository, the rest the released Qwen-Image recipe."""
    cfg = prepare_config(str(ROOT / "configs/qwen/arcflow_qwen_2512.py"), work_dir=str(tmp_path))
    released = prepare_config(str(ROOT / "configs/qwen/arcflow_qwen.py"), work_dir=str(tmp_path))
    assert cfg.model.student.transformer.from_pretrained == "Qwen/Qwen-Image-2512"
    assert cfg.model.prompt_encoder.pretrained == "Qwen/Qwen-Image-2512"
    for key in ("student", "prompt_encoder"):
        ours, theirs = dict(cfg.model[key]), dict(released.model[key])
        ours.pop("transformer", None), theirs.pop("transformer", None)
        ours.pop("pretrained", None), theirs.pop("pretrained", None)
        assert ours == theirs
    assert cfg.optim_wrapper == released.optim_wrapper and cfg.train_cfg == released.train_cfg
