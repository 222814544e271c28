"""tools/build_tiny_world.py: its teacher stages chain through the exports the configs name."""

from __future__ import annotations

from mmengine.config import Config

from .conftest import ROOT


def _config(name: str) -> Config:
    return Config.fromfile(ROOT / "configs" / "tiny" / f"{name}.py")


def test_each_teacher_stage_starts_from_the_previous_stage_export(build_tool):
    for arch, stages in build_tool.TEACHER_STAGES.items():
        first = _config(stages[0][1]).model
        assert "from_pretrained" not in first.transformer, f"{arch} stage A must start from scratch"
        for (previous, _), (stage, run) in zip(stages, stages[1:]):
            model = _config(run).model
            export = str(build_tool.stage_export(arch, previous))
            assert model.transformer.from_pretrained == export, (arch, stage)
            if "cfg_teacher" in model:
                # Guidance distillation: the frozen CFG teacher is the same previous stage.
                assert model.cfg_teacher.transformer.from_pretrained == export, (arch, stage)


def test_every_stage_is_a_tiny_config_of_its_arch(build_tool):
    for arch, stages in build_tool.TEACHER_STAGES.items():
        for _, run in stages:
            model = _config(run).model
            assert model.type == "FlowMatchingTrainer"
            assert model.arch == arch


def test_each_stage_declares_the_architecture_it_loads(build_tool):
    """A stage's export has the architecture its config builds; the next stage must expect it,
    grown by its ``deepen`` factor (stage B once still expected stage A3's depth from A4)."""
    from arcflow.models.growth import deepened_config

    for arch, stages in build_tool.TEACHER_STAGES.items():
        for (_, previous), (stage, run) in zip(stages, stages[1:]):
            exported = dict(_config(previous).model.transformer.from_config)
            transformer = _config(run).model.transformer
            loaded = deepened_config(arch, exported, transformer.get("deepen", 1))
            assert dict(transformer.from_config) == loaded, (arch, stage)
