"""tools/build_tiny_world.py: the recipe folders, the plan it makes of them, and its evaluation."""

from __future__ import annotations

from pathlib import Path

import pytest

from arcflow.engine.launch import prepare_config

from .conftest import ROOT

# What each stage starts from and, for a guidance stage, which conditional teacher it distils:
# the lineage of the shipped teachers. Both stacks begin alike.
_FIRST_STAGES = {
    "01_vae": ("vae", None, None),
    "02_vae_decoder": ("decoder", "01_vae", None),
    "03_teacher_high_noise": ("teacher", None, None),
    "04_teacher_low_noise": ("teacher", "03_teacher_high_noise", None),
    "05_teacher_lr_restart": ("teacher", "04_teacher_low_noise", None),
}
LINEAGE = {
    "flux": {
        **_FIRST_STAGES,
        "06_teacher_deepen": ("teacher", "05_teacher_lr_restart", None),
        "07_guidance_distill": ("guidance", "06_teacher_deepen", "06_teacher_deepen"),
        "08_teacher_more_stars": ("teacher", "06_teacher_deepen", None),
        "09_teacher_sizes_stated": ("teacher", "08_teacher_more_stars", None),
        "10_guidance_retarget": ("guidance", "07_guidance_distill", "09_teacher_sizes_stated"),
        "11_teacher_recondition": ("teacher", "10_guidance_retarget", None),
        "12_guidance_per_sample": (
            "guidance",
            "11_teacher_recondition",
            "11_teacher_recondition",
        ),
        "13_teacher_fresh_scenes": ("teacher", "11_teacher_recondition", None),
        "14_guidance_fresh_scenes": (
            "guidance",
            "12_guidance_per_sample",
            "13_teacher_fresh_scenes",
        ),
        "15_teacher_large_triangles": ("teacher", "13_teacher_fresh_scenes", None),
        "16_guidance_large_triangles": (
            "guidance",
            "14_guidance_fresh_scenes",
            "15_teacher_large_triangles",
        ),
    },
    "qwen_image": {
        **_FIRST_STAGES,
        "06_teacher_sizes_shapes": ("teacher", "05_teacher_lr_restart", None),
    },
}


@pytest.mark.parametrize("arch", LINEAGE)
def test_the_recipe_folder_is_the_lineage_in_run_order(build_tool, arch):
    stages = build_tool.recipe(arch)
    folder = ROOT / "configs" / "tiny" / "build" / build_tool.STACK_NAMES[arch]
    assert [stage.name for stage in stages] == sorted(p.stem for p in folder.glob("*.py"))
    assert [int(stage.name[:2]) for stage in stages] == list(range(1, len(stages) + 1))
    plan = {stage.name: (stage.kind, stage.start, stage.cfg_teacher) for stage in stages}
    assert plan == LINEAGE[arch]


@pytest.mark.parametrize("arch", LINEAGE)
def test_every_stage_is_an_ancestor_of_the_shipped_teacher(build_tool, arch):
    """Stages the shipped weights do not descend from have no place in the recipe; the VAE
    stages feed every teacher stage through the stack's latents."""
    stages = build_tool.recipe(arch)
    by_name = {stage.name: stage for stage in stages}
    ancestors, todo = set(), [stages[-1].name]
    while todo:
        stage = by_name[todo.pop()]
        ancestors.add(stage.name)
        todo += [name for name in (stage.start, stage.cfg_teacher) if name is not None]
    vae_stages = {stage.name for stage in stages if stage.kind in ("vae", "decoder")}
    assert ancestors | vae_stages == set(by_name)


@pytest.mark.parametrize("arch", LINEAGE)
def test_each_stage_gets_its_inputs_as_config_options(build_tool, arch, tmp_path):
    """The options the tool hands in are keys tools/train.py accepts, they name the exports of
    the stages each one starts from, and every run gets a checkpoint folder of its own; the last
    stage is exported into the shipped stack."""
    stages = build_tool.recipe(arch)
    name = build_tool.STACK_NAMES[arch]
    by_name = {stage.name: stage for stage in stages}
    for stage in stages:
        options = build_tool.stage_inputs(stage, stages)
        cfg = prepare_config(str(ROOT / stage.config), str(tmp_path), options)
        assert cfg.checkpoint_dir == str(tmp_path / "checkpoints")
        assert cfg.run_name == f"tiny_{name}_{stage.name}"
        model = cfg.model
        if stage.kind == "decoder":
            assert model.pretrained == f"checkpoints/tiny-{name}"
        if stage.kind in ("teacher", "guidance"):
            if stage.start is None:
                assert model.transformer == {"from_config": "tiny"}
            else:
                exported = build_tool.export_dir(by_name[stage.start], stages)
                assert model.transformer.from_pretrained == str(exported)
                assert model.transformer.subfolder == "transformer"
        if stage.kind == "guidance":
            exported = build_tool.export_dir(by_name[stage.cfg_teacher], stages)
            assert model.cfg_teacher.transformer.from_pretrained == str(exported)
        else:
            assert "cfg_teacher" not in model
    assert build_tool.export_dir(stages[-1], stages) == Path(f"checkpoints/tiny-{name}")
    assert build_tool.export_dir(stages[-2], stages) == Path(
        f"checkpoints/tiny-{name}-stages/{stages[-2].name}"
    )


def _write_stage(folder: Path, name: str, stage: str, model: str = 'type="VAETrainer"') -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(f'model = dict({model}, arch="flux")\n_stage = {stage}\n')


@pytest.mark.parametrize(
    "stages, message",
    [
        ({"01_vae": 'dict(kind="vae")', "03_x": 'dict(kind="vae")'}, "expected number 02"),
        ({"01_vae": 'dict(kind="vea")'}, "kind one of vae, decoder, teacher, guidance"),
        ({"01_vae": 'dict(kind="vae", start="01_vae")'}, "takes [] (required) of [], got"),
        (
            {"01_vae": 'dict(kind="vae")', "02_dec": 'dict(kind="decoder", start="03_vae")'},
            "start='03_vae' is not an earlier stage of the recipe (01_vae)",
        ),
        (
            {"01_vae": 'dict(kind="vae")', "02_dec": 'dict(kind="decoder", start="01_vae")'},
            None,
        ),
        ({"01_teacher": 'dict(kind="teacher")'}, "trains a FlowMatchingTrainer of arch 'flux'"),
    ],
)
def test_a_misdeclared_recipe_is_one_clear_error(build_tool, tmp_path, stages, message):
    for name, stage in stages.items():
        _write_stage(tmp_path, name, stage)
    if message is None:
        assert [s.kind for s in build_tool.recipe("flux", tmp_path)] == ["vae", "decoder"]
        return
    with pytest.raises(build_tool.RecipeError) as error:
        build_tool.recipe("flux", tmp_path)
    assert message in str(error.value)


def test_a_guidance_stage_distils_a_conditional_teacher(build_tool, tmp_path):
    flow = 'type="FlowMatchingTrainer"'
    _write_stage(tmp_path, "01_teacher", 'dict(kind="teacher")', flow)
    _write_stage(
        tmp_path,
        "02_guidance",
        'dict(kind="guidance", start="01_teacher", cfg_teacher="01_teacher")',
        flow,
    )
    _write_stage(
        tmp_path,
        "03_guidance",
        'dict(kind="guidance", start="02_guidance", cfg_teacher="02_guidance")',
        flow,
    )
    with pytest.raises(build_tool.RecipeError, match="cfg_teacher 02_guidance must be a condi"):
        build_tool.recipe("flux", tmp_path)


def test_dry_run_prints_the_commands_and_runs_nothing(build_tool, capsys, monkeypatch):
    def no_run(*args, **kwargs):
        raise AssertionError("a dry run ran a command")

    monkeypatch.setattr(build_tool.subprocess, "run", no_run)
    monkeypatch.setattr(build_tool.torch, "set_num_threads", lambda threads: None)
    monkeypatch.chdir(ROOT)  # main() works from the repository root
    build_tool.main(["--arch", "qwen_image", "--dry-run", "--stage", "04_teacher_low_noise"])
    out = capsys.readouterr().out
    assert (
        "$ python tools/train.py configs/tiny/build/qwen/04_teacher_low_noise.py --no-resume "
        "--cfg-options run_name=tiny_qwen_04_teacher_low_noise "
        "model.transformer.from_pretrained=checkpoints/tiny-qwen-stages/03_teacher_high_noise "
        "model.transformer.subfolder=transformer"
    ) in out
    assert "export -> checkpoints/tiny-qwen-stages/04_teacher_low_noise" in out
    with pytest.raises(build_tool.RecipeError, match="--stage 04 is no stage of the qwen_image"):
        build_tool.main(["--arch", "qwen_image", "--dry-run", "--stage", "04"])


def test_the_build_ends_with_the_evaluation_and_the_bar_measurement(build_tool):
    """Both evaluate the shipped stack; the bars are read on 1000 one-object prompts of the
    teacher and the two 2-NFE students, with samplers the evaluation tool accepts."""
    from arcflow.evaluation.harness import SAMPLER_KINDS, parse_samplers

    class Recorder(build_tool.Builder):
        """A dry run that records each step's name and each command."""

        def __init__(self) -> None:
            super().__init__(1, False, 200, 1000, dry_run=True)
            self.stages: list[str] = []
            self.commands: list[list[str]] = []

        def stage(self, name, done, action) -> None:
            self.stages.append(name)
            super().stage(name, done, action)

        def python(self, *argv: str) -> None:
            self.commands.append(list(argv))

    for arch, name in build_tool.STACK_NAMES.items():
        builder = Recorder()
        build_tool.build_stack(builder, arch)
        assert builder.stages[-2:] == [f"{name}: evaluation", f"{name}: bar measurement"]
        evaluation, bar = (dict(zip(c[1::2], c[2::2])) for c in builder.commands[-2:])
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
        trained = [c[1] for c in builder.commands if c[0] == "tools/train.py"]
        recipe = [str(stage.config) for stage in build_tool.recipe(arch)]
        assert trained == [*recipe, f"configs/tiny/arcflow_tiny_{name}.py"] + [
            f"configs/tiny/linear_tiny_{name}.py"
        ]


def test_a_grown_stage_is_exported_at_the_size_it_trained(build_tool, tmp_path, monkeypatch):
    """06_teacher_deepen grows its input: its export has the grown architecture, built from the
    input as training built it, and holds the run's EMA weights."""
    import torch
    from diffusers import FluxTransformer2DModel
    from safetensors.torch import save_file

    from arcflow.engine.checkpoint_files import write_checkpoint
    from arcflow.models.growth import deepen_transformer
    from arcflow.tinyworld.architectures import transformer_config

    monkeypatch.chdir(tmp_path)
    stages = build_tool.recipe("flux")
    stage = next(stage for stage in stages if stage.name == "06_teacher_deepen")
    torch.manual_seed(0)
    start = FluxTransformer2DModel(**transformer_config("flux"))
    start.save_pretrained(Path("checkpoints/tiny-flux-stages/05_teacher_lr_restart/transformer"))
    trained = deepen_transformer(start, "flux", 2)
    with torch.no_grad():
        for param in trained.parameters():
            param.add_(torch.randn_like(param))
    ema = {f"transformer.{k}": v.clone() for k, v in trained.state_dict().items()}
    run = Path("checkpoints") / stage.run
    run.mkdir(parents=True)
    write_checkpoint(run / "iter_000010", [("ema.safetensors", lambda p: save_file(ema, p))], 0)

    build_tool.export_transformer(stage, stages)

    exported = FluxTransformer2DModel.from_pretrained(
        "checkpoints/tiny-flux-stages/06_teacher_deepen", subfolder="transformer"
    )
    assert exported.config.num_single_layers == 2 * transformer_config("flux")["num_single_layers"]
    for key, value in exported.state_dict().items():
        assert torch.equal(value, ema[f"transformer.{key}"]), key
