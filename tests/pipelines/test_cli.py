"""inference_flux.py / inference_qwen.py / export_arcflow_to_diffusers.py as a user runs them."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from arcflow.errors import run_cli
from arcflow.pipelines import cli, loading

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = ["inference_flux.py", "inference_qwen.py", "export_arcflow_to_diffusers.py"]
# One BLAS thread everywhere: the images of different processes are compared bit for bit.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def script(name: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / name), *args],
        capture_output=True,
        text=True,
        env=env or ENV,
        cwd=REPO,
        timeout=300,
    )


def pixels_and_text(path: Path) -> tuple[np.ndarray, dict[str, str]]:
    with Image.open(path) as image:
        return np.asarray(image), dict(image.text)


@pytest.mark.parametrize("name", SCRIPTS)
def test_help(name):
    result = script(name, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout


def test_invalid_image_size_fails_before_any_model_loads(tiny_stacks, monkeypatch, capsys):
    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded before the size was checked")

    monkeypatch.setattr(cli, "load_pipeline", no_loading)
    model = str(tiny_stacks.model("flux"))  # VAE x2, 2x2 tokens: sides are multiples of 4
    capsys.readouterr()  # the fixture's own output
    for flag, value in (("--height", "30"), ("--width", "-8"), ("--height", "0")):
        args = ["--prompt", "x", "--model", model, "--adapter", model, flag, value]
        assert run_cli(lambda argv: cli.run(loading.FLUX, argv), args) == 2
        err = capsys.readouterr().err.strip()
        assert (
            err == f"error: {flag} must be a positive multiple of 4 for this model (its VAE's "
            f"downsampling x 2x2 token packing), got {value}"
        )
    # The shipped tiny stacks' VAEs downsample by 4 (FLUX: 3 levels; Qwen-Image: 1 temporal + 1).
    assert loading.image_size_multiple(str(REPO / "checkpoints/tiny-flux")) == 8
    assert loading.image_size_multiple(str(REPO / "checkpoints/tiny-qwen")) == 8
    assert loading.image_size_multiple("black-forest-labs/FLUX.1-dev") == 16


def test_lora_flag_stacks_style_loras_on_the_student(tiny_stacks, tmp_path, capsys):
    args = ["--model", str(tiny_stacks.model("flux"))]
    args += ["--adapter", str(tiny_stacks.adapter("flux")), "--height", "32", "--width", "32"]
    args += ["--prompt", "a red circle", "--seed", "3"]
    zero = tiny_stacks.style_lora("flux", tmp_path / "zero", 0.0)
    style = tiny_stacks.style_lora("flux", tmp_path / "style", 0.5)
    style_file = style / "pytorch_lora_weights.safetensors"
    runs = {
        "plain": [],
        "zero": ["--lora", str(zero)],
        "style": ["--lora", f"{style_file}:0.8"],
        "both": ["--lora", f"{style_file}:0.8", "--lora", f"{zero}:2"],
    }
    pixels = {}
    for name, extra in runs.items():
        assert cli.run(loading.FLUX, args + extra + ["--out", str(tmp_path / f"{name}.png")]) == 0
        pixels[name], text = pixels_and_text(tmp_path / f"{name}.png")
    assert np.array_equal(pixels["zero"], pixels["plain"])
    assert np.abs(pixels["style"].astype(int) - pixels["plain"].astype(int)).max() > 2
    assert np.array_equal(pixels["both"], pixels["style"])
    assert text["loras"] == f"{style_file}:0.8 {zero}:2"
    assert cli.lora_argument("a:b/c") == ("a:b/c", 1.0)
    assert cli.lora_argument("dir/x.safetensors:-0.5") == ("dir/x.safetensors", -0.5)

    missing = tmp_path / "missing"
    capsys.readouterr()  # drop what the fixtures and earlier runs printed (progress bars)
    assert cli.run(loading.FLUX, args + ["--lora", str(missing)]) == cli.EXIT_LOAD_ERROR
    err = capsys.readouterr().err
    assert err == f"error: --lora {missing}: no such file or folder\n"
    # a weights file that is no LoRA is named as such, not as a missing adapter name
    not_lora = tmp_path / "not_lora.safetensors"
    save_file({"proj.weight": torch.zeros(2, 2)}, str(not_lora))
    assert cli.run(loading.FLUX, args + ["--lora", str(not_lora)]) == cli.EXIT_LOAD_ERROR
    assert f"--lora {not_lora} holds no LoRA weights" in capsys.readouterr().err
    with pytest.raises(argparse.ArgumentTypeError, match="the weight 'abc' after ':'"):
        cli.lora_argument(f"{style_file}:abc")


def test_tiny_stack_writes_pngs_with_metadata(tiny_stacks, tmp_path, capsys):
    out = tmp_path / "flux"
    args = ["--model", str(tiny_stacks.model("flux")), "--adapter"]
    args += [str(tiny_stacks.adapter("flux")), "--height", "32", "--width", "32"]
    args += ["--prompt", "a red circle", "--prompt", "blue", "--num-images", "2", "--seed", "7"]
    assert cli.run(loading.FLUX, args + ["--out", str(out), "--teacher-steps", "2"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "00000_a-red-circle.png",
        "00000_a-red-circle_vs_teacher.png",
        "00001_a-red-circle.png",
        "00001_a-red-circle_vs_teacher.png",
        "00002_blue.png",
        "00002_blue_vs_teacher.png",
        "00003_blue.png",
        "00003_blue_vs_teacher.png",
    ]
    pixels, text = pixels_and_text(out / "00003_blue.png")
    assert pixels.shape == (32, 32, 3)
    assert text["prompt"] == "blue" and text["seed"] == "10" and text["nfe"] == "2"
    assert text["height"] == "32" and text["width"] == "32"
    assert text["adapter"] == str(tiny_stacks.adapter("flux"))
    settings = json.loads(text["arcflow"])
    assert settings["model"] == str(tiny_stacks.model("flux")) and settings["shift"] == 3.2
    compare, text = pixels_and_text(out / "00003_blue_vs_teacher.png")
    assert compare.shape == (32, 64, 3) and text["teacher_steps"] == "2"
    assert np.array_equal(compare[:, :32], pixels)

    qwen = tmp_path / "qwen.png"
    args = ["--model", str(tiny_stacks.model("qwen_image")), "--adapter"]
    args += [str(tiny_stacks.adapter("qwen_image")), "--height", "32", "--width", "32"]
    assert cli.run(loading.QWEN_IMAGE, args + ["--prompt", "a cat", "--out", str(qwen)]) == 0
    assert pixels_and_text(qwen)[1]["prompt"] == "a cat"
    assert "wrote" in capsys.readouterr().out


def test_merge_lora_gives_the_same_image(tiny_stacks, tmp_path):
    args = ["--model", str(tiny_stacks.model("flux")), "--adapter"]
    args += [str(tiny_stacks.adapter("flux")), "--height", "32", "--width", "32"]
    args += ["--prompt", "a red circle", "--seed", "3"]
    plain, merged = tmp_path / "plain.png", tmp_path / "merged.png"
    assert cli.run(loading.FLUX, args + ["--out", str(plain)]) == 0
    assert cli.run(loading.FLUX, args + ["--out", str(merged), "--merge-lora"]) == 0
    (a, _), (b, text) = pixels_and_text(plain), pixels_and_text(merged)
    assert json.loads(text["arcflow"])["merge_lora"] is True
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1  # float32: rounding only
    with pytest.raises(SystemExit):
        cli.run(loading.FLUX, args + ["--merge-lora", "--teacher-steps", "2"])


def test_load_errors_are_one_message(tiny_stacks, tmp_path, capsys, monkeypatch):
    flux = ["--prompt", "x", "--out", str(tmp_path)]
    cases = [
        (["--model", str(tmp_path / "missing")], "no such file or folder"),
        (
            ["--model", str(tiny_stacks.model("flux")), "--adapter", str(tmp_path / "gone")],
            f"--adapter {tmp_path / 'gone'}: no such file or folder",
        ),
        (
            ["--model", str(tiny_stacks.model("flux")), "--adapter", str(tmp_path)],
            "could not load the ArcFlow adapter",
        ),
        (
            ["--model", str(tiny_stacks.model("flux")), "--adapter"]
            + [str(tiny_stacks.adapter("qwen_image"))],
            "trained for this --model",
        ),
    ]
    for args, expected in cases:
        assert cli.run(loading.FLUX, flux + args) == cli.EXIT_LOAD_ERROR
        err = capsys.readouterr().err
        assert err.startswith("error: ") and expected in err and "Traceback" not in err
    monkeypatch.chdir(tmp_path)  # run from a folder without the tiny stacks
    assert cli.run(loading.FLUX, flux + ["--preset", "tiny"]) == cli.EXIT_LOAD_ERROR
    err = capsys.readouterr().err
    assert "checkpoints/tiny-flux" in err and "repository root" in err


@pytest.mark.slow
def test_offline_default_model_message():
    """The defaults are Hub ids; offline the user gets one message and no traceback."""
    result = script("inference_qwen.py", "--prompt", "x", env={**ENV, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == cli.EXIT_LOAD_ERROR
    assert "Traceback" not in result.stderr
    assert result.stderr.count("error:") == 1
    assert "Qwen/Qwen-Image" in result.stderr and "--model" in result.stderr


@pytest.mark.slow
def test_torchrun_shards_equal_single_process(tiny_stacks, tmp_path):
    """2 gloo ranks write exactly the files (pixels and metadata) of one process."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n\nblue square\na green triangle\n")
    args = ["--model", str(tiny_stacks.model("flux")), "--adapter"]
    args += [str(tiny_stacks.adapter("flux")), "--height", "32", "--width", "32"]
    args += ["--prompts-file", str(prompts), "--num-images", "2", "--seed", "3"]
    assert cli.run(loading.FLUX, args + ["--out", str(tmp_path / "single")]) == 0
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    result = subprocess.run(
        launcher
        + ["--nproc_per_node=2", str(REPO / "inference_flux.py")]
        + args
        + ["--out", str(tmp_path / "multi")],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=REPO,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[rank 0] wrote" in result.stdout and "[rank 1] wrote" in result.stdout
    single = sorted((tmp_path / "single").iterdir())
    multi = sorted((tmp_path / "multi").iterdir())
    assert [p.name for p in single] == [p.name for p in multi] and len(single) == 6
    for a, b in zip(single, multi):
        (pa, ta), (pb, tb) = pixels_and_text(a), pixels_and_text(b)
        assert np.array_equal(pa, pb) and ta == tb


@pytest.mark.parametrize("spec", [loading.FLUX, loading.QWEN_IMAGE], ids=["flux", "qwen"])
def test_tiny_preset(spec, tmp_path, monkeypatch):
    """The README's first command, run from the repository root: the image size, text length and
    guidance come from the stack folder's own sampling defaults."""
    monkeypatch.chdir(REPO)
    out = tmp_path / "tiny.png"
    args = ["--preset", "tiny", "--prompt", "a red circle at the top left", "--out", str(out)]
    assert cli.run(spec, args) == 0
    pixels, text = pixels_and_text(out)
    defaults = loading.sampling_defaults(spec.under(REPO).preset_folder("tiny"))
    assert pixels.shape == (defaults["height"], defaults["width"], 3) and text["nfe"] == "2"
    settings = json.loads(text["arcflow"])
    assert settings["guidance_scale"] == defaults.get("guidance_scale")
    assert settings["max_sequence_length"] == defaults.get("max_sequence_length", 512)


def test_call_settings_come_from_flags_then_the_model_folder(tmp_path):
    """Each flag wins; unset ones come from the folder's sampling_defaults.json, then the
    pipeline's own (None, 512 text tokens); a folder's bad file is one clear LoadError."""
    parser = cli.build_parser(loading.FLUX)
    plain = parser.parse_args(["--prompt", "x"])
    assert loading.resolve_call(str(tmp_path), plain) == dict(
        height=None, width=None, max_sequence_length=512, guidance_scale=None
    )
    (tmp_path / loading.SAMPLING_DEFAULTS_FILE).write_text(
        json.dumps(dict(height=64, width=64, max_sequence_length=32, guidance_scale=7.0))
    )
    assert loading.resolve_call(str(tmp_path), plain) == dict(
        height=64, width=64, max_sequence_length=32, guidance_scale=7.0
    )
    given = parser.parse_args(["--prompt", "x", "--guidance-scale", "2", "--height", "32"])
    assert loading.resolve_call(str(tmp_path), given) == dict(
        height=32, width=64, max_sequence_length=32, guidance_scale=2.0
    )
    assert loading.resolve_call("owner/hub-model", plain)["height"] is None
    (tmp_path / loading.SAMPLING_DEFAULTS_FILE).write_text(json.dumps(dict(steps=4)))
    with pytest.raises(loading.LoadError, match="may only set"):
        loading.resolve_call(str(tmp_path), plain)


def test_image_size_that_does_not_fit_is_one_line(tiny_stacks, tmp_path, capsys):
    args = ["--model", str(tiny_stacks.model("flux"))]
    args += ["--adapter", str(tiny_stacks.adapter("flux"))]
    args += ["--prompt", "a red circle", "--height", "30", "--width", "32", "--out", str(tmp_path)]
    assert run_cli(lambda argv: cli.run(loading.FLUX, argv), args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --height must be a positive multiple of 4")
    assert err.endswith("got 30") and "\n" not in err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--prompt", ""], "--prompt is empty"),
        (["--prompt", "x", "--seed", "-1"], "--seed must be >= 0"),
        (["--prompt", "x", "--shift", "0"], "--shift must be > 0"),
        (["--prompt", "x", "--timestep-ratio", "2"], "--timestep-ratio must be in (0, 1]"),
        (["--prompt", "x", "--guidance-scale", "-5"], "--guidance-scale must be > 0"),
    ],
)
def test_bad_generation_flags_fail_before_loading(flags, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "load_from_args", lambda *a, **k: pytest.fail("loaded a model"))
    with pytest.raises(SystemExit) as exit_:
        cli.run(loading.FLUX, [*flags, "--out", str(tmp_path)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_an_empty_prompts_file_is_named(tmp_path, capsys):
    empty = tmp_path / "prompts.txt"
    empty.write_text("\n  \n")
    with pytest.raises(SystemExit) as exit_:
        cli.run(loading.FLUX, ["--prompts-file", str(empty), "--out", str(tmp_path)])
    assert exit_.value.code == 2
    assert f"--prompts-file {empty} holds no prompt" in capsys.readouterr().err


def test_cuda_without_cuda_is_one_line(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = ["--prompt", "x", "--device", "cuda", "--out", str(tmp_path)]
    assert run_cli(lambda argv: cli.run(loading.FLUX, argv), args) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --device cuda: no CUDA device is visible here; use --device cpu"


def test_a_second_run_numbers_its_images_unless_overwrite(tiny_stacks, tmp_path, capsys):
    """Earlier images are kept (the new ones get _2, _3) unless --overwrite; every written file,
    the _vs_teacher comparison included, is reported."""
    args = ["--model", str(tiny_stacks.model("flux")), "--adapter"]
    args += [str(tiny_stacks.adapter("flux")), "--height", "32", "--width", "32"]
    args += ["--prompt", "a red circle", "--teacher-steps", "2", "--out", str(tmp_path)]
    for _ in range(2):
        assert cli.run(loading.FLUX, args) == 0
    out = capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "00000_a-red-circle.png",
        "00000_a-red-circle_2.png",
        "00000_a-red-circle_2_vs_teacher.png",
        "00000_a-red-circle_vs_teacher.png",
    ]
    assert "00000_a-red-circle.png exists: writing 00000_a-red-circle_2.png" in out
    assert f"wrote {tmp_path / '00000_a-red-circle_2_vs_teacher.png'}" in out
    assert cli.run(loading.FLUX, [*args, "--overwrite"]) == 0
    out = capsys.readouterr().out
    assert len(list(tmp_path.iterdir())) == 4 and "exists" not in out
    assert f"wrote {tmp_path / '00000_a-red-circle.png'}" in out


def untruncated_tokens(pipe, arch: str, prompt: str) -> int:
    """Tokens of ``prompt`` as the pipeline's long encoder sees it, before any cut (written out
    here from the stock pipelines, apart from the project's count)."""
    if arch == "flux":
        return len(pipe.tokenizer_2(prompt).input_ids)
    text = pipe.prompt_template_encode.format(prompt)
    return len(pipe.tokenizer(text).input_ids) - pipe.prompt_template_encode_start_idx


@pytest.mark.parametrize("arch", ["flux", "qwen_image"])
def test_a_prompt_longer_than_the_text_encoder_reads_is_said(arch, tiny_stacks, tmp_path, capsys):
    """The tokenizers cut a long prompt without a word; the command line says so, with the
    pipeline's own token count, and still writes the image."""
    from arcflow import pipelines

    spec = loading.SPECS[arch]
    model = tiny_stacks.model(arch)
    pipe = getattr(pipelines, spec.pipeline).from_pretrained(model, transformer=None, vae=None)
    short, long = "a red circle", "a red circle at the top left " * 8
    counts = [untruncated_tokens(pipe, arch, prompt) for prompt in (short, long)]
    limit = sum(counts) // 2  # the short prompt fits, the long one does not
    args = ["--model", str(model), "--adapter", str(tiny_stacks.adapter(arch))]
    args += ["--height", "32", "--width", "32", "--max-sequence-length", str(limit), "--nfe", "1"]
    args += ["--prompt", short, "--prompt", long, "--out", str(tmp_path)]
    assert cli.run(spec, args) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning: prompt")]
    assert warnings == [
        f"warning: prompt 2: the prompt is {counts[1]} tokens long and the model reads only the "
        f"first {limit}: the rest is ignored; shorten it"
    ]
    assert len(list(tmp_path.glob("*.png"))) == 2
