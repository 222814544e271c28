"""``--quantize`` of inference_flux.py / inference_qwen.py on the shipped tiny stacks: the
quantized student's image is the float one up to quantization noise, and what cannot run here is
one error line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from arcflow.errors import run_cli
from arcflow.models.arch import get_arch
from arcflow.models.quantization import save_gguf
from arcflow.pipelines import cli, loading

REPO = Path(__file__).resolve().parents[2]
SPECS = loading.specs_under(REPO)
FLUX, QWEN_IMAGE = SPECS["flux"], SPECS["qwen_image"]
PROMPT = "a red circle at the top left"
# int8 weight-only and GGUF Q8_0 measured 44-63 dB on these stacks (seeds 0-2); 30 dB is still
# quantization noise, a broken head or LoRA gives far less.
MIN_PSNR_DB = 30.0


def psnr(a: Path, b: Path) -> float:
    x, y = (np.asarray(Image.open(p), dtype=np.float64) / 255 for p in (a, b))
    return float(10 * np.log10(1 / max(np.mean((x - y) ** 2), 1e-12)))


def generate(spec: loading.CliSpec, out: Path, *flags: str) -> dict:
    args = ["--preset", "tiny", "--prompt", PROMPT, "--out", str(out), *flags]
    assert cli.run(spec, args) == 0
    return json.loads(Image.open(out).text["arcflow"])


@pytest.mark.parametrize("arch", sorted(SPECS))
def test_quantized_student_image_is_the_float_one(arch, tmp_path):
    spec = SPECS[arch]
    base = get_arch(arch).transformer_cls.from_pretrained(
        spec.preset_folder("tiny"), subfolder="transformer"
    )
    gguf = save_gguf(base, tmp_path / "transformer.gguf")
    float_png = tmp_path / "float.png"
    generate(spec, float_png)
    for scheme, flags in (("int8", []), ("gguf", ["--gguf", str(gguf)])):
        png = tmp_path / f"{scheme}.png"
        settings = generate(spec, png, "--quantize", scheme, *flags)
        assert settings["quantize"] == scheme
        assert psnr(png, float_png) > MIN_PSNR_DB, scheme


def test_quantized_run_prints_nothing_on_stderr(tmp_path):
    """torchao's import-time log lines (CUDA kernels a CPU build cannot load) stay out of the
    output, which is for the command's own messages."""
    out = tmp_path / "int8.png"
    result = subprocess.run(
        [sys.executable, str(REPO / "inference_flux.py"), "--preset", "tiny", "--prompt", PROMPT]
        + ["--quantize", "int8", "--out", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)},
        cwd=REPO,
        timeout=300,
    )
    assert result.returncode == 0 and result.stderr == "" and out.is_file()


def test_schemes_the_cpu_cannot_run_are_one_line(tmp_path, capsys):
    base = ["--preset", "tiny", "--prompt", "x", "--out", str(tmp_path), "--device", "cpu"]
    for flags, expected in (
        (["--quantize", "nf4"], "nf4 does not run on cpu: there, choose one of ['none', 'int8'"),
        (["--quantize", "float8"], "float8 does not run on cpu"),
        (["--quantize", "gguf"], "needs --gguf FILE"),
        (["--quantize", "gguf", "--gguf", str(tmp_path / "no.gguf")], "is not a file"),
    ):
        assert run_cli(lambda argv: cli.run(FLUX, argv), base + flags) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: --quantize {flags[1]}") or "--gguf" in err
        assert expected in err and err.count("\n") == 1
    with pytest.raises(SystemExit) as exit_info:
        cli.run(FLUX, base + ["--quantize", "int8", "--merge-lora"])
    assert exit_info.value.code == 2
    assert "--merge-lora needs a float base" in capsys.readouterr().err


def test_a_gguf_of_another_model_is_one_load_error(tmp_path, capsys):
    qwen = get_arch("qwen_image").transformer_cls.from_pretrained(
        QWEN_IMAGE.preset_folder("tiny"), subfolder="transformer"
    )
    wrong = save_gguf(qwen, tmp_path / "qwen.gguf")
    args = ["--preset", "tiny", "--prompt", "x", "--out", str(tmp_path / "x.png")]
    assert cli.run(FLUX, args + ["--quantize", "gguf", "--gguf", str(wrong)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: could not load the FLUX.1-dev transformer with --quantize gguf")
    assert "Traceback" not in err


def test_web_demo_takes_the_flag(capsys):
    """app.py reuses the command line's parser and loading: the same one-line refusal."""
    from arcflow.app import server

    assert server.main(["--quantize", "nf4", "--device", "cpu"]) == cli.EXIT_LOAD_ERROR
    err = capsys.readouterr().err
    assert err.startswith("error: --quantize nf4 does not run on cpu") and err.count("\n") == 1
