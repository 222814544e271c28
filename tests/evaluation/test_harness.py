"""The evaluation harness and tools/evaluate.py on 4-prompt runs of a tiny-world-shaped stack."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from arcflow.evaluation import harness
from arcflow.evaluation.features import ClipScorer, InceptionFeatures, to_uint8
from arcflow.evaluation.metrics import PSNR_CAP_DB, psnr, wilson_interval
from arcflow.evaluation.report import markdown_table, write_report
from arcflow.models.vae import LatentCodec, load_vae
from arcflow.pipelines import loading
from arcflow.tinyworld.evaluator import AttributeEvaluator
from arcflow.tinyworld.scenes import heldout_prompts, render_batch
from arcflow.tinyworld.scoring import EvaluatorFeatures, SceneCaptionScorer

ROOT = Path(__file__).resolve().parents[2]
SAMPLERS = "teacher6,teacher2,linear2,arcflow1,arcflow2"


def test_parse_samplers():
    specs = harness.parse_samplers("teacher50, arcflow2,linear1")
    assert [(s.name, s.kind, s.steps) for s in specs] == [
        ("teacher50", "teacher", 50),
        ("arcflow2", "arcflow", 2),
        ("linear1", "linear", 1),
    ]
    for bad in ("euler2", "arcflow", "arcflow0", "teacher2,teacher2", "no_decay2"):
        with pytest.raises(ValueError):
            harness.parse_samplers(bad)
    ablation = harness.parse_samplers("no_decay2", [*harness.SAMPLER_KINDS, "no_decay"])
    assert ablation == [harness.SamplerSpec("no_decay2", "no_decay", 2)]


@pytest.fixture(scope="module")
def flux_pipe(tiny_world_stack):
    from arcflow.models.adapter_format import load_arcflow_adapter
    from arcflow.models.loading import load_base_transformer

    pipe = loading.load_pipeline(
        loading.FLUX, str(tiny_world_stack.model), str(tiny_world_stack.adapter),
        torch.float32, "cpu", offload=False,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    linear = load_arcflow_adapter(
        load_base_transformer(tiny_world_stack.model, "flux"), tiny_world_stack.linear
    )
    return pipe, linear


@pytest.fixture(scope="module")
def run(flux_pipe, tiny_world_stack):
    """4 held-out prompts x 2 seeds through every kind of sampler."""
    pipe, linear = flux_pipe
    stack = harness.stack_from_pipeline(pipe, {"linear": linear}, 64, 64, max_sequence_length=32)
    pairs = heldout_prompts(4, seed=0)
    evaluator = AttributeEvaluator.from_pretrained(tiny_world_stack.evaluator)
    result = harness.evaluate(
        stack,
        harness.parse_samplers(SAMPLERS),
        [prompt for prompt, _ in pairs],
        seeds=2,
        seed=5,
        batch_prompts=3,  # batches that split a prompt's seeds apart are fine too
        feature_spaces=[EvaluatorFeatures(evaluator)],
        scorer=SceneCaptionScorer(evaluator),
        real_images=to_uint8(render_batch([scene for _, scene in pairs])),
        grid_prompts=3,
    )
    return pairs, result


def test_every_sampler_is_measured(run):
    _, result = run
    rows = {row.name: row for row in result.samplers}
    assert list(rows) == SAMPLERS.split(",") and result.reference == "teacher6"
    assert [rows[n].nfe for n in rows] == [6, 2, 2, 1, 2]
    teacher = rows["teacher6"]
    assert teacher.speedup == 1.0 and teacher.psnr_vs_teacher_db is None
    assert teacher.fid_vs_teacher == {}
    for row in rows.values():
        assert row.seconds_per_image > 0 and row.speedup > 0
        assert row.fid_vs_data["evaluator"] >= 0 and row.diversity["evaluator"] >= 0
        assert 0 <= row.caption_match <= 1
        assert set(row.attribute_accuracy) >= {"color", "shape", "count"}
        assert set(row.accuracy_by_objects) == {2}  # these 4 held-out scenes hold 2 objects
        assert row.accuracy_by_objects[2]["match"] == row.caption_match
        assert row.images_by_objects == {2: 8}  # 4 prompts x 2 seeds
        assert row.match_by_object == {}  # no one-object prompts here
        if row is not teacher:
            assert 0 < row.psnr_vs_teacher_db < PSNR_CAP_DB
            # The mean of the 8 images' PSNRs, with the half-width of its normal 95 % interval.
            per_image = np.array(row.psnr_vs_teacher_per_image)
            assert len(per_image) == 8 and row.psnr_vs_teacher_db == pytest.approx(per_image.mean())
            half = 1.959964 * per_image.std(ddof=1) / np.sqrt(8)
            assert row.psnr_vs_teacher_ci95 == pytest.approx(half, rel=1e-5)
            assert row.latent_mse_vs_teacher > 0 and row.fid_vs_teacher["evaluator"] >= 0
        # Relative diversity: this sampler's over the teacher's, paired by prompt.
        relative = row.diversity["evaluator"] / teacher.diversity["evaluator"]
        assert row.diversity_vs_teacher["evaluator"] == pytest.approx(relative)
        assert row.diversity_vs_teacher_ci95["evaluator"] >= 0
    assert teacher.diversity_vs_teacher["evaluator"] == 1.0
    assert teacher.diversity_vs_teacher_ci95["evaluator"] == pytest.approx(0.0, abs=1e-12)
    # fewer evaluations take less time (6 teacher steps vs 1 student step)
    assert rows["arcflow1"].speedup > 1
    assert set(result.references) == {"data", "vae"}
    assert 0 < result.references["vae"]["psnr_vs_data_db"] < PSNR_CAP_DB
    assert result.settings["machine"]["torch"] == torch.__version__


def test_images_are_the_pipelines_from_the_same_noise(run, flux_pipe):
    """Grid cell (sampler, prompt p) is seed 0 of prompt p: image index 2p, noise seed 5 + 2p,
    exactly what ``inference_flux.py --num-images 2 --seed 5`` draws for that image."""
    pipe, _ = flux_pipe
    pairs, result = run
    assert {tuple(g.shape) for g in result.grid.values()} == {(3, 3, 64, 64)}
    for p in range(3):
        generator = torch.Generator().manual_seed(5 + 2 * p)
        call = dict(height=64, width=64, max_sequence_length=32, output_type="np")
        for name, kwargs in (("arcflow2", {}), ("teacher6", {"teacher_steps": 6})):
            image = pipe(pairs[p][0], generator=generator, **call, **kwargs).images[0]
            expected = np.round(image * 255).astype(np.int16)
            got = result.grid[name][p].permute(1, 2, 0).numpy().astype(np.int16)
            assert np.abs(got - expected).max() <= 1  # two roundings of the same float image
            generator = torch.Generator().manual_seed(5 + 2 * p)


def test_reports(run, tmp_path):
    _, result = run
    paths = write_report(result, tmp_path)
    data = json.loads(paths["json"].read_text())
    assert [row["name"] for row in data["samplers"]] == SAMPLERS.split(",")
    assert data["settings"]["num_prompts"] == 4 and data["settings"]["seeds"] == 2
    table = paths["markdown"].read_text()
    assert table.startswith("| sampler | NFE | FID vs teacher (evaluator) |")
    for name in [*SAMPLERS.split(","), "(data)", "(vae)"]:
        assert f"| {name} |" in table
        assert f"| {name} | 2 |" in table  # caption match of the 2-object prompts
    arcflow = next(row for row in result.samplers if row.name == "arcflow2")
    psnr_cell = f"{arcflow.psnr_vs_teacher_db:.2f} +- {arcflow.psnr_vs_teacher_ci95:.2f}"
    assert f"| {psnr_cell} |" in table
    assert "| sampler | objects | caption match | 95 % interval | color | count |" in table
    # The interval of each rate over its 8 images (4 prompts x 2 seeds), e.g. 0 of 8: 0.0-32.4 %.
    for row in result.samplers:
        low, high = wilson_interval(round(row.caption_match * 8), 8)
        rate = f"{100 * row.caption_match:.1f}%"
        assert f"| {row.name} | 2 | {rate} | {100 * low:.1f}-{100 * high:.1f}% |" in table
    assert "(vae): the rendered scenes encoded (posterior mean) and decoded: " in table
    with Image.open(paths["grid"]) as grid:
        assert grid.size == (80 + 3 * 128, 5 * 128)


def test_a_sampler_with_one_image_for_every_seed_reads_zero_diversity(
    flux_pipe, tiny_world_stack, monkeypatch
):
    """The collapse users fear ("the same image whatever the seed"): a linear student whose every
    seed of a prompt gives that prompt's seed-0 image reads 0 relative diversity, with no doubt
    about it, while the untouched ArcFlow student reads clearly more than 0."""
    pipe, linear = flux_pipe
    stack = harness.stack_from_pipeline(pipe, {"linear": linear}, 64, 64, max_sequence_length=32)
    honest = harness.sample_student

    def collapsed(student, noise, cond, steps, **kwargs):
        latents = honest(student, noise, cond, steps, **kwargs)
        if student is not stack.students["linear"] or len(latents) % 2:  # 1: the warm-up
            return latents
        rest = latents.shape[1:]
        first_seed = latents.reshape(-1, 2, *rest)[:, :1]  # 2 seeds per prompt
        return first_seed.expand(-1, 2, *rest).reshape(latents.shape)

    monkeypatch.setattr(harness, "sample_student", collapsed)
    evaluator = AttributeEvaluator.from_pretrained(tiny_world_stack.evaluator)
    prompts = [prompt for prompt, _ in heldout_prompts(4, seed=1)]
    result = harness.evaluate(
        stack,
        harness.parse_samplers("teacher4,linear2,arcflow2"),
        prompts,
        seeds=2,
        batch_prompts=2,
        feature_spaces=[EvaluatorFeatures(evaluator)],
    )
    rows = {row.name: row for row in result.samplers}
    assert rows["linear2"].diversity["evaluator"] == 0.0
    assert rows["linear2"].diversity_vs_teacher["evaluator"] == 0.0
    assert rows["linear2"].diversity_vs_teacher_ci95["evaluator"] == 0.0
    assert rows["arcflow2"].diversity_vs_teacher["evaluator"] > 0.3
    table = markdown_table(result)
    assert "| 0.00 +- 0.00 |" in table  # the linear row's relative diversity


class LinearAsTeacher:
    """A teacher whose velocity is a K = 1 student's constant step velocity: its N Euler steps on
    the uniform raw grid are then the linear shortcut's N closed-form moves on the same grid."""

    def __init__(self, linear) -> None:
        self.linear = linear

    def student_policy(self, x, sigma, cond):
        return self.linear.student_policy(x, sigma, cond)

    def teacher_velocity(self, x, sigma, cond):
        return self.linear.student_policy(x, sigma, cond).velocity(sigma)


def test_a_sampler_equal_to_the_teacher_agrees_perfectly(flux_pipe):
    """~0 latent MSE and near-cap PSNR for the same path (Euler steps and closed-form moves round
    differently, which can flip a few 8-bit pixels); one seed gives no diversity, no evaluator no
    caption match, no real images no reference rows."""
    pipe, linear = flux_pipe
    stack = harness.stack_from_pipeline(pipe, {"linear": linear}, 64, 64, max_sequence_length=32)
    stack.teacher = LinearAsTeacher(linear)
    result = harness.evaluate(
        stack, harness.parse_samplers("teacher2,linear2,arcflow2"), ["a red circle"] * 2, seeds=1
    )
    same, other = result.samplers[1], result.samplers[2]
    assert same.latent_mse_vs_teacher < 1e-10 and 80.0 < same.psnr_vs_teacher_db <= PSNR_CAP_DB
    assert other.psnr_vs_teacher_db < 60.0 and other.latent_mse_vs_teacher > 1e-6
    assert same.diversity == {} and same.caption_match is None and result.references == {}
    assert same.fid_vs_teacher == {}  # no feature space given


def test_qwen_teacher_counts_both_cfg_forwards(tiny_world_qwen):
    """Qwen-Image's teacher runs true CFG (2 forwards a step, the empty negative prompt encoded
    as the pipeline does); the student runs once a step. Same noise as the pipeline."""
    pipe = loading.load_pipeline(
        loading.QWEN_IMAGE, str(tiny_world_qwen.model), str(tiny_world_qwen.adapter),
        torch.float32, "cpu", offload=False,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    stack = harness.stack_from_pipeline(pipe, None, 64, 64, max_sequence_length=64)
    prompts = [prompt for prompt, _ in heldout_prompts(2, seed=0)]
    result = harness.evaluate(stack, harness.parse_samplers("teacher2,arcflow2"), prompts)
    assert [row.nfe for row in result.samplers] == [4, 2]
    image = pipe(
        prompts[1], generator=torch.Generator().manual_seed(1), teacher_steps=2, height=64,
        width=64, max_sequence_length=64, output_type="np",
    ).images[0]  # fmt: skip
    got = result.grid["teacher2"][1].permute(1, 2, 0).numpy().astype(np.int16)
    assert np.abs(got - np.round(image * 255).astype(np.int16)).max() <= 1


def test_missing_standard_checkpoints_say_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        InceptionFeatures(tmp_path / "inception-2015-12-05.pt", torch.device("cpu"))
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        ClipScorer(tmp_path / "clip", torch.device("cpu"))


class FakeInception(torch.nn.Module):
    """The TorchScript detector's calling convention: uint8 images, ``return_features``."""

    def forward(self, images: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        return images.float().mean(dim=(2, 3))


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_inception_features_load_a_torchscript_detector(tmp_path):
    path = tmp_path / "inception.pt"
    torch.jit.script(FakeInception()).save(str(path))
    space = InceptionFeatures(path, torch.device("cpu"), batch_size=2)
    images = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    assert torch.allclose(space(images), images.float().mean(dim=(2, 3)))


def test_clip_scorer_reads_a_local_clip_folder(tmp_path):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from arcflow.tinyworld.stack import build_clip_tokenizer

    tokenizer = build_clip_tokenizer()
    text = dict(vocab_size=len(tokenizer), max_position_embeddings=77)
    text |= {f"{k}_token_id": getattr(tokenizer, f"{k}_token_id") for k in ("bos", "eos", "pad")}
    layers = dict(hidden_size=16, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2)
    config = CLIPConfig(
        text_config=text | layers,
        vision_config=layers | dict(image_size=32, patch_size=8),
        projection_dim=8,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(tmp_path)
    size = dict(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=CLIPImageProcessor(**size), tokenizer=tokenizer).save_pretrained(
        tmp_path
    )
    clip = ClipScorer(tmp_path, torch.device("cpu"))
    images = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    features = clip(images)
    assert features.shape == (3, 8)
    scores = clip.score(features, ["a red circle", "a blue star", "a green square"])
    assert scores.shape == (3,) and ((scores >= 0) & (scores <= 100)).all()


# ------------------------------------------------------------------------------------ the CLI
def test_cli_on_four_prompts(evaluate_tool, tiny_world_stack, tmp_path, capsys):
    stack = tiny_world_stack
    args = ["--model", str(stack.model), "--adapter", str(stack.adapter)]
    args += ["--linear-adapter", str(stack.linear), "--evaluator", str(stack.evaluator)]
    args += ["--height", "64", "--width", "64", "--max-sequence-length", "32"]
    args += ["--student", f"again={stack.adapter}", "--prompts", "4", "--seeds", "1"]
    args += ["--samplers", "teacher3,linear2,arcflow2,again2"]
    assert evaluate_tool.main(args + ["--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "results.json").read_text())
    rows = {row["name"]: row for row in data["samplers"]}
    assert list(rows) == ["teacher3", "linear2", "arcflow2", "again2"]
    # the same adapter loaded twice samples the same images
    assert rows["again2"]["psnr_vs_teacher_db"] == rows["arcflow2"]["psnr_vs_teacher_db"]
    assert data["settings"]["adapter"] == str(stack.adapter)
    assert (tmp_path / "grid.png").is_file()
    out = capsys.readouterr().out
    assert "| arcflow2 | 2 |" in out and "wrote" in out


def test_cli_splits_object_counts_and_reconstructs_the_scenes(
    evaluate_tool, tiny_world_stack, tmp_path
):
    """``--num-objects 1,2``: N one-object then N two-object prompts in one report, scored overall
    and per object count; the (vae) row is the VAE's reconstruction of exactly those scenes."""
    stack = tiny_world_stack
    args = ["--model", str(stack.model), "--adapter", str(stack.adapter)]
    args += ["--evaluator", str(stack.evaluator), "--height", "64", "--width", "64"]
    args += ["--max-sequence-length", "32", "--prompts", "2", "--num-objects", "1,2"]
    args += ["--seeds", "1", "--samplers", "teacher2,arcflow1", "--out", str(tmp_path)]
    assert evaluate_tool.main(args) == 0
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["settings"]["num_prompts"] == 4 and data["settings"]["num_objects"] == "1,2"
    references = data["references"]
    for row in [*data["samplers"], references["data"], references["vae"]]:
        by_objects = row["accuracy_by_objects"]
        assert set(by_objects) == {"1", "2"}
        assert row["images_by_objects"] == {"1": 2, "2": 2}
        assert all(0 <= v <= 1 for accuracy in by_objects.values() for v in accuracy.values())
        # 2 prompts of each count: the overall match is the mean of the two
        halves = (by_objects["1"]["match"] + by_objects["2"]["match"]) / 2
        assert row["caption_match"] == pytest.approx(halves)
        # of the one-object prompts only the second states a size ("a large white circle ...")
        assert list(row["match_by_object"]) == ["large circle"]
        assert row["match_by_object"]["large circle"]["prompts"] == 1
    table = (tmp_path / "results.md").read_text()
    for name in ("teacher2", "arcflow1", "(data)", "(vae)"):
        assert all(f"| {name} | {objects} |" in table for objects in ("all", "1", "2"))
    assert "| sampler | large circle (1) |" in table

    # The (vae) row, independently: the same scenes through the stack's VAE (posterior mean).
    pairs = heldout_prompts(2, 0, num_objects=1) + heldout_prompts(2, 0, num_objects=2)
    scenes = to_uint8(render_batch([scene for _, scene in pairs]))  # (4, 3, 64, 64)
    codec = LatentCodec(load_vae(str(stack.model)))
    with torch.no_grad():
        recon = to_uint8(codec.decode(codec.encode(scenes.float() / 127.5 - 1, sample=False)))
    expected = psnr(recon.float(), scenes.float(), data_range=255.0).mean().item()
    vae = references["vae"]
    assert math.isfinite(vae["psnr_vs_data_db"]) and vae["psnr_vs_data_db"] > 0
    assert vae["psnr_vs_data_db"] == pytest.approx(expected, abs=1e-9)
    assert 0 <= vae["caption_match"] <= 1


def test_cli_errors(evaluate_tool, tiny_world_stack, tmp_path, capsys):
    base = ["--model", str(tiny_world_stack.model), "--adapter", str(tiny_world_stack.adapter)]
    base += ["--prompts", "4", "--out", str(tmp_path), "--evaluator", str(tmp_path / "none")]
    with pytest.raises(SystemExit):
        evaluate_tool.main(base + ["--samplers", "arcflow2,euler3"])
    assert "unknown sampler 'euler3'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        evaluate_tool.main(base + ["--samplers", "linear2"])
    assert "--linear-adapter" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        evaluate_tool.main(base + ["--samplers", "arcflow2", "--student", "K4=x"])
    assert "NAME=FOLDER" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        evaluate_tool.main(base + ["--samplers", "arcflow2"])
    assert "attribute evaluator" in capsys.readouterr().err
    prompts_file = ["--prompts-file", str(tmp_path / "prompts.txt"), "--num-objects", "1"]
    with pytest.raises(SystemExit):
        evaluate_tool.main(base[:4] + prompts_file + ["--samplers", "arcflow2", "--out", "x"])
    assert "--num-objects picks tiny-world prompts" in capsys.readouterr().err


SHIPPED = {"flux": "tiny-flux", "qwen_image": "tiny-qwen"}


@pytest.mark.slow
@pytest.mark.parametrize("arch", sorted(SHIPPED))
def test_cli_on_the_shipped_preset(evaluate_tool, tmp_path, arch):
    """The documented command (docs/results.md) at 4 prompts, on whatever is shipped."""
    shipped = ROOT / "checkpoints" / SHIPPED[arch]
    if not shipped.with_name(f"{shipped.name}-arcflow").is_dir():
        pytest.skip(f"{shipped}-arcflow not shipped yet (tools/build_tiny_world.py)")
    samplers = "teacher50,teacher2,arcflow1,arcflow2,arcflow4"
    if shipped.with_name(f"{shipped.name}-linear").is_dir():
        samplers += ",linear2"
    args = ["--preset", "tiny", "--arch", arch, "--prompts", "4", "--seeds", "2"]
    assert evaluate_tool.main(args + ["--samplers", samplers, "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "results.json").read_text())["samplers"]
    assert all(row["caption_match"] is not None for row in rows)
