"""User mistakes end in one line and exit code 2, for every kind of command line: training,
inference, export; --debug and ARCFLOW_DEBUG=1 show the traceback instead."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from arcflow.engine.launch import ConfigError
from arcflow.errors import EXIT_USAGE, UserError, run_cli
from arcflow.pipelines import cli, loading
from tests.engine.conftest import CONFIG, ROOT, train_in_process


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def inference(*args: str) -> int:
    return run_cli(lambda argv: cli.run(loading.FLUX, argv), ["--prompt", "a red circle", *args])


def test_config_not_found_names_the_closest(capsys):
    assert train_in_process(["configs/tiny/arcflow_ci_flx.py"]) == EXIT_USAGE
    line = one_line(capsys)
    assert "configs/tiny/arcflow_ci_flx.py does not exist" in line
    assert "did you mean 'arcflow_ci_flux.py'" in line


def test_misspelt_key_names_the_nearest_valid_key(capsys, tmp_path):
    argv = [CONFIG, "--work-dir", str(tmp_path), "--cfg-options", "model.nfee=3"]
    assert train_in_process(argv) == EXIT_USAGE
    line = one_line(capsys)
    assert "unknown config key model.nfee (did you mean 'nfe'?)" in line


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        (
            "train_cfg.max_iter=12",
            "unknown config key train_cfg.max_iter (did you mean 'max_iters'?)",
        ),
        (
            "optim_wrapper.optimizer.lrr=1e-3",
            "unknown config key optim_wrapper.optimizer.lrr (did you mean 'lr'?)",
        ),
        (
            "train_dataloader.batchsize=4",
            "unknown config key train_dataloader.batchsize (did you mean 'batch_size'?)",
        ),
        (
            "custom_hooks.0.gama=3",
            "unknown config key custom_hooks[0].gama (did you mean 'gamma'?)",
        ),
        ("train_cfg.max_iters=abc", "train_cfg.max_iters=abc: expected a number"),
    ],
)
def test_nested_keys_and_value_types_are_checked(option, expected, capsys, tmp_path):
    """Keys of the loop, optimiser, data loader and hooks, and the type of an override, fail in
    one line before anything is built."""
    argv = [CONFIG, "--work-dir", str(tmp_path), "--cfg-options", option]
    assert train_in_process(argv) == EXIT_USAGE
    assert expected in one_line(capsys)


def test_a_config_with_a_syntax_error_is_one_line(capsys, tmp_path):
    config = tmp_path / "broken.py"
    config.write_text("model = dict(\n")
    assert train_in_process([str(config), "--work-dir", str(tmp_path)]) == EXIT_USAGE
    assert f"config {config} is not valid Python" in one_line(capsys)


def test_launcher_pytorch_outside_torchrun_is_one_line(capsys, tmp_path, monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR"):
        monkeypatch.delenv(name, raising=False)
    argv = [CONFIG, "--work-dir", str(tmp_path), "--launcher", "pytorch"]
    assert train_in_process(argv) == EXIT_USAGE
    assert "runs under torchrun" in one_line(capsys)


def test_debug_shows_the_traceback(monkeypatch):
    with pytest.raises(ConfigError, match="does not exist"):
        train_in_process(["missing.py", "--debug"])
    monkeypatch.setenv("ARCFLOW_DEBUG", "1")
    with pytest.raises(ConfigError, match="does not exist"):
        train_in_process(["missing.py"])


def test_out_that_is_a_file(capsys, tmp_path):
    existing = tmp_path / "notes.txt"
    existing.write_text("mine")
    assert inference("--out", str(existing)) == EXIT_USAGE
    assert f"--out {existing} is an existing file" in one_line(capsys)
    assert existing.read_text() == "mine"
    argv = [CONFIG, "--work-dir", str(existing)]
    assert train_in_process(argv) == EXIT_USAGE
    assert f"--work-dir {existing} is an existing file" in one_line(capsys)


def test_out_that_is_not_writable(capsys, tmp_path):
    blocked = tmp_path / "notes.txt" / "images"  # a folder below a file cannot be created
    (tmp_path / "notes.txt").write_text("mine")
    assert inference("--out", str(blocked)) == EXIT_USAGE
    line = one_line(capsys)
    assert f"--out {blocked} is not writable" in line and "choose a folder" in line


def test_user_error_is_rank_zero_only(capsys, monkeypatch):
    def fail(argv):
        raise UserError("a mistake\nover two lines")

    monkeypatch.setenv("RANK", "1")
    assert run_cli(fail, []) == EXIT_USAGE
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("RANK", "0")
    assert run_cli(fail, []) == EXIT_USAGE
    assert one_line(capsys) == "error: a mistake over two lines"


def test_the_real_entry_point_exits_2_without_traceback(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "tools/train.py", str(tmp_path / "missing.py")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == EXIT_USAGE
    assert result.stderr.strip() == (
        f"error: config {tmp_path / 'missing.py'} does not exist: give the path of an mmengine "
        "Python config, such as configs/tiny/arcflow_tiny_flux.py"
    )


def test_ctrl_c_is_one_word_and_exit_130(capsys):
    def interrupted(argv):
        raise KeyboardInterrupt

    assert run_cli(interrupted, []) == 130
    assert capsys.readouterr().err == "interrupted\n"
