"""``app.py``'s command line (the inference CLI's flags plus where to serve) and the demo's
sampling without a server: Qwen-Image's pixels, guidance overrides."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from arcflow.app.demo import Demo, Request
from arcflow.app.server import main, parse_args
from arcflow.pipelines import cli, loading

REPO = Path(__file__).resolve().parents[2]


def test_help_lists_the_cli_flags_and_where_to_serve():
    result = subprocess.run(
        [sys.executable, str(REPO / "app.py"), "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    for flag in ("--host", "--port", "--arch", "--model", "--adapter", "--offload", "--merge-lora"):
        assert flag in result.stdout


def test_python_app_py_serves_the_page(tmp_path, port):
    server = subprocess.Popen(
        [sys.executable, str(REPO / "app.py"), "--port", str(port), "--out", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stderr.read().decode()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as page:
                    html = page.read().decode()
                break
            except OSError:  # not listening yet
                assert time.monotonic() < deadline, "app.py did not serve within 120 s"
                time.sleep(0.5)
        assert "ArcFlow: tiny-flux (FLUX.1-dev architecture)" in html  # the page's title
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_without_a_model_it_serves_the_tiny_stack():
    spec, args, prompts = parse_args([])
    assert spec is loading.FLUX and args.preset == "tiny" and prompts == []
    assert (args.host, args.port) == ("127.0.0.1", 7860)
    spec, args, prompts = parse_args(["--arch", "qwen_image", "--prompt", "a", "--prompt", "b"])
    assert spec is loading.QWEN_IMAGE and args.preset == "tiny" and prompts == ["a", "b"]
    _, args, _ = parse_args(["--model", "black-forest-labs/FLUX.1-dev"])
    assert args.preset is None


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--port", "70000"], "--port must be from 0 to 65535, got 70000"),
        (["--nfe", "0"], "--nfe must be >= 1, got 0"),
        (["--merge-lora", "--teacher-steps", "50"], "--merge-lora removes the teacher"),
        (["--arch", "sdxl"], "invalid choice: 'sdxl'"),
    ],
)
def test_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        parse_args(argv)
    assert stop.value.code == 2 and message in capsys.readouterr().err


def test_a_model_that_does_not_load_is_one_message(capsys):
    assert main(["--model", "./no/such/folder"]) == cli.EXIT_LOAD_ERROR
    err = capsys.readouterr().err
    assert err == "error: --model ./no/such/folder: no such file or folder\n"
    assert "Traceback" not in err


def test_qwen_image_gives_the_cli_pixels(tmp_path, png):
    prompt = "a blue star below a small yellow square"
    argv = ["--preset", "tiny", "--prompt", prompt, "--seed", "3", "--num-images", "2"]
    assert cli.run(loading.QWEN_IMAGE, argv + ["--out", str(tmp_path / "cli")]) == 0
    spec, args, _ = parse_args(["--arch", "qwen_image", "--out", str(tmp_path / "app")])
    demo = Demo(spec, cli.load_from_args(spec, args), args.out)
    result = demo.generate(Request(prompt, 3, 2, demo.default_guidance, num_images=2))
    for k, path in enumerate(result.images):
        pixels, text = png(path)
        expected_pixels, expected_text = png(cli.image_path(tmp_path / "cli", k, 2, prompt))
        assert np.array_equal(pixels, expected_pixels) and text == expected_text
    assert text["guidance_scale"] == "None"  # the CLI's: the adapter's own, not named


def test_guidance_other_than_the_clis_reaches_the_image(served, references, png):
    reference = references[0]
    default = served.demo.generate(Request(reference.prompt, reference.seed, 2, 7.0))
    changed = served.demo.generate(Request(reference.prompt, reference.seed, 2, 3.0))
    assert np.array_equal(png(default.images[0])[0], png(reference.student)[0])
    pixels, text = png(changed.images[0])
    assert text["guidance_scale"] == "3.0"
    assert not np.array_equal(pixels, png(reference.student)[0])


def test_app_py_names_a_port_in_use_in_one_line():
    """The real entry point goes through run_cli: exit 2 and one line, no traceback."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run(
            [sys.executable, str(REPO / "app.py"), "--port", str(port)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            timeout=120,
        )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().startswith("error: cannot serve on 127.0.0.1:")
    assert "\n" not in result.stderr.strip()


def test_a_port_in_use_is_one_line_before_loading(capsys, monkeypatch):
    import socket

    from arcflow.app import server
    from arcflow.errors import run_cli

    monkeypatch.setattr(server.cli, "load_from_args", lambda *a, **k: pytest.fail("loaded"))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        argv = ["--preset", "tiny", "--host", "127.0.0.1", "--port", str(port)]
        assert run_cli(lambda a: server.main(a, REPO), argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: cannot serve on 127.0.0.1:{port}") and "\n" not in err
