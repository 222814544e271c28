"""tools/build_tiny_world.py: its teacher stages chain through the exports the configs name."""

from __future__ import annotations

from mmengine.config import Config

from .conftest import ROOT


def _config(name: str) -> Config:
    return Config.fromfile(ROOT / "configs" / "tiny" / f"{name}.py")


def _earlier_exports(build_tool, arch: str, stages) -> list[dict[str, str]]:
    """Per stage: {export path: config name} of the stages trained before it."""
    exports, earlier = [], {}
    for stage, run in stages:
        exports.append(dict(earlier))
        earlier[str(build_tool.stage_export(arch, stage))] = run
    return exports


def test_each_teacher_stage_starts_from_an_earlier_stage_export(build_tool):
    """Stage A starts from scratch; every later stage (and the frozen CFG teacher of a guidance
    stage) loads the export of a stage the build has already trained."""
    for arch, stages in build_tool.TEACHER_STAGES.items():
        first = _config(stages[0][1]).model
        assert "from_pretrained" not in first.transformer, f"{arch} stage A must start from scratch"
        for (stage, run), earlier in zip(
            stages[1:], _earlier_exports(build_tool, arch, stages)[1:]
        ):
            model = _config(run).model
            assert model.transformer.from_pretrained in earlier, (arch, stage)
            if "cfg_teacher" in model:
                assert model.cfg_teacher.transformer.from_pretrained in earlier, (arch, stage)
        # the shipped teacher is guidance-distilled from the last conditional stage (FLUX)
        if "cfg_teacher" in _config(stages[-1][1]).model:
            teacher = _config(stages[-1][1]).model.cfg_teacher.transformer.from_pretrained
            assert teacher == str(build_tool.stage_export(arch, stages[-2][0])), arch


def test_every_stage_is_a_tiny_config_of_its_arch(build_tool):
    for arch, stages in build_tool.TEACHER_STAGES.items():
        for _, run in stages:
            model = _config(run).model
            assert model.type == "FlowMatchingTrainer"
            assert model.arch == arch


def test_each_stage_declares_the_architecture_it_loads(build_tool):
    """Each stage builds the architecture of the export it loads, grown by its ``deepen`` factor;
    where a stage names one (``from_config``: a name such as ``"tiny"``, grown by ``deepen``,
    or constructor arguments), the two agree (stage B once still expected stage A3's depth from
    A4). A stage without ``from_config`` takes the loaded export's."""
    from arcflow.models.builder import transformer_architecture
    from arcflow.models.growth import deepened_config

    for arch, stages in build_tool.TEACHER_STAGES.items():
        built: dict[str, dict] = {}  # config name -> the architecture its run trains
        for (stage, run), earlier in zip(stages, _earlier_exports(build_tool, arch, stages)):
            transformer = _config(run).model.transformer
            deepen = transformer.get("deepen", 1)
            declared = transformer.get("from_config")
            if declared is not None:
                declared = transformer_architecture(arch, declared, deepen)
            if "from_pretrained" not in transformer:
                assert declared is not None, (arch, stage)
                built[run] = declared
                continue
            source = built[earlier[transformer.from_pretrained]]
            loaded = deepened_config(arch, source, deepen)
            assert declared in (None, loaded), (arch, stage)
            built[run] = loaded


class _Recorder:
    """Stands in for the build's ``Builder``: records stage names and the evaluation commands,
    trains and exports nothing (``resume``: the stack on disk is left alone)."""

    resume = True
    num_prompts = 200
    bar_prompts = 1000

    def __init__(self) -> None:
        self.stages: list[str] = []
        self.commands: list[list[str]] = []

    def stage(self, name, done, action) -> None:
        self.stages.append(name)
        if name.endswith(("evaluation", "bar measurement")):
            action()

    def python(self, *argv: str) -> None:
        self.commands.append(list(argv))


def test_the_build_ends_with_the_evaluation_and_the_bar_measurement(build_tool):
    """Both evaluate the shipped stack; the bars are read on 1000 one-object prompts of the
    teacher and the two 2-NFE students, with samplers the evaluation tool accepts."""
    from arcflow.evaluation.harness import SAMPLER_KINDS, parse_samplers

    for arch, name in build_tool.STACK_NAMES.items():
        builder = _Recorder()
        build_tool.build_stack(builder, arch)
        assert builder.stages[-2:] == [f"{name}: evaluation", f"{name}: bar measurement"]
        evaluation, bar = (dict(zip(c[1::2], c[2::2])) for c in builder.commands)
        for key in ("--arch", "--model", "--adapter", "--linear-adapter", "--seeds"):
            assert bar[key] == evaluation[key], key
        assert evaluation["--model"] == f"checkpoints/tiny-{name}"
        assert (evaluation["--prompts"], evaluation["--num-objects"]) == ("200", "1,2")
        assert (bar["--prompts"], bar["--num-objects"]) == ("1000", "1")
        assert bar["--out"] == f"work_dirs/tiny_world_{name}_bar"
        samplers = parse_samplers(bar["--samplers"], list(SAMPLER_KINDS))
        assert [(s.kind, s.steps) for s in samplers] == [
            ("teacher", 50),
            ("arcflow", 2),
            ("linear", 2),
        ]
