"""Every command that README.md and docs/ show runs as written on a fresh clone, or needs what the
docs say to make first.

Each ``python``/``torchrun`` command of a fenced shell block or an inline code span is checked
against its script: the script exists, its ``--help`` runs, every flag the command passes is one
the script knows, every flag it requires is given, and every input path exists in the checkout
(or is listed below with what makes it). The cheap ones then run as written, from an empty
folder so that their outputs land there.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}

# Programs that are not the project's (their commands are the user's own set-up).
EXTERNAL = {"pip", "pytest", "tensorboard", "wandb"}
# Flags whose values a command writes, never reads.
OUTPUT_FLAGS = {"--out", "--out-dir", "--work-dir"}
# Inputs that a fresh clone lacks, and what the docs say makes them.
MADE_FIRST = {
    "data/prompts/train.jsonl": "your prompt file (README, Training)",
    "data/prompts/part-*.jsonl": "your prompt files (docs/prompt_data.md)",
    "data/prompts/*.jsonl": "your prompt files (docs/prompt_data.md)",
    "checkpoints/arcflow_flux/iter_005000": "a FLUX.1-dev training run",
    "checkpoints/tiny-flux-k4": "the ablation's export (docs/results.md)",
    "checkpoints/tiny-flux-no-decay": "the ablation's export (docs/results.md)",
    "work_dirs/arcflow_tiny_flux": "the tiny re-distillation (README)",
    "work_dirs/my-tiny-flux-arcflow": "the export of the tiny re-distillation (README)",
    "prompts.txt": "your prompt file",
    "checkpoints/arcflow_flux/iter_001500": "a checkpoint of your run (docs/training.md)",
    "checkpoints/arcflow_tiny_flux/iter_000400": "the tiny FLUX distillation (docs/results.md)",
}
# Commands cheap enough to run as written in the test suite (about 90 s together).
RUN_AS_WRITTEN = [
    'python inference_flux.py --preset tiny --prompt "a large red circle at the top left" '
    "--out outputs/",
    'python inference_qwen.py --preset tiny --prompt "a large red square on the left" '
    "--out outputs/",
    'python inference_flux.py --preset tiny --prompt "a red circle at the top left"',
    'python inference_flux.py --preset tiny --quantize int8 --prompt "a blue square in the center"',
    "python tools/count_params.py configs/flux/arcflow_flux.py",
    "python tools/count_params.py configs/qwen/arcflow_qwen.py",
    "python tools/plot_trajectory.py --toy --out docs/images/trajectory_toy.png",
    "python tools/benchmark.py --tiny",
]


def shell_commands(text: str) -> list[str]:
    """Commands of fenced ``bash`` blocks (continuations joined, comments dropped) and of inline
    code spans that start with ``python`` or ``torchrun``. A block that starts with ``#!`` is a
    script file (e.g. a SLURM job), not commands to type, and is left out."""
    commands = []
    for block in re.findall(r"```(?:bash|sh|shell)\n(.*?)```", text, re.S):
        if block.startswith("#!"):
            continue
        for line in block.replace("\\\n", " ").splitlines():
            line = re.split(r"\s+#\s", line.strip())[0].strip()
            if line and not line.startswith("#"):
                commands.append(line)
    for span in re.findall(r"`((?:python|torchrun) [^`]+)`", text):
        commands.append(" ".join(span.split()))
    return commands


def all_commands() -> list[str]:
    return sorted({c for doc in DOCS for c in shell_commands(doc.read_text(encoding="utf-8"))})


def script_and_args(command: str) -> tuple[str, list[str]] | None:
    """``(script, arguments)`` of a project command; None for another program's or a sketch."""
    argv = shlex.split(command)
    if argv[0] in EXTERNAL or "..." in argv:
        return None
    assert argv[0] in ("python", "torchrun"), f"unknown program in a documented command: {command}"
    if argv[0] == "torchrun":  # torchrun's own options (--name=value) precede the script
        script = next(i for i, a in enumerate(argv) if i and not a.startswith("-"))
        argv = ["python", *argv[script:]]
    return argv[1], argv[2:]


@cache
def help_text(script: str) -> str:
    result = subprocess.run(
        [sys.executable, script, "--help"],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"{script} --help failed:\n{result.stderr[-2000:]}"
    return result.stdout


FLAG = r"(?<![\w-])(--[a-z0-9][a-z0-9-]*)"


def required_flags(help_output: str) -> list[set[str]]:
    """What the usage line requires: each set holds flags of which one must be given (a flag
    outside brackets alone; a required ``(--a | --b)`` group together)."""
    usage = help_output.split("\n\n")[0]
    while re.search(r"\[[^\[\]]*\]", usage):
        usage = re.sub(r"\[[^\[\]]*\]", "", usage)
    groups = [set(re.findall(FLAG, group)) for group in re.findall(r"\(([^()]*)\)", usage)]
    singles = re.findall(FLAG, re.sub(r"\([^()]*\)", "", usage))
    return groups + [{flag} for flag in singles]


def input_paths(args: list[str]) -> list[str]:
    """Arguments that name files of the checkout to read (values of output flags excluded)."""
    paths = []
    for previous, arg in zip(["", *args], args, strict=False):
        value = arg.split("=", 1)[-1] if arg.startswith("--") or "=" in arg else arg
        if previous in OUTPUT_FLAGS or arg.startswith("--") and "=" not in arg:
            continue
        if re.match(r"^(configs|checkpoints|data|work_dirs|tools)/|\.(py|txt|jsonl)$", value):
            paths.append(value)
    return paths


def is_placeholder(path: str) -> bool:
    return bool(re.search(r"<[^>]+>|\b[A-Z][A-Z_]+\b", path))


COMMANDS = [c for c in all_commands() if script_and_args(c) is not None]


def test_the_docs_show_commands_and_the_cheap_list_is_current():
    assert len(COMMANDS) > 20
    missing = [c for c in RUN_AS_WRITTEN if c not in COMMANDS]
    assert not missing, f"no longer in the docs: {missing}"


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_documented_command_matches_its_script(command):
    script, args = script_and_args(command)
    if is_placeholder(script):
        return
    assert (ROOT / script).is_file(), f"{script} does not exist"
    # argparse's ArgumentDefaultsHelpFormatter would add "(default: None)", or a second default
    # to a help text that states its own.
    flags = " ".join(help_text(script).split()).split(" --")
    assert all(flag.count("default") <= 1 for flag in flags), f"{script} --help repeats defaults"
    assert "(default: None)" not in help_text(script)
    known = set(re.findall(FLAG, help_text(script)))
    given = {a.split("=", 1)[0] for a in args if a.startswith("--")}
    assert given <= known, f"unknown flags {sorted(given - known)} for {script}"
    for one_of in required_flags(help_text(script)):
        assert one_of & given, f"{script} requires one of {sorted(one_of)}"
    for path in input_paths(args):
        if is_placeholder(path) or path in MADE_FIRST:
            continue
        assert (ROOT / path).exists(), f"{path} is not in a fresh clone and MADE_FIRST lacks it"


def as_written_in(folder: Path, command: str) -> list[str]:
    """``command`` to run from ``folder``: checkout paths made absolute, outputs left relative
    (their parent folders made, as the checkout has them)."""
    script, args = script_and_args(command)
    argv = [sys.executable, str(ROOT / script)]
    for previous, arg in zip(["", *args], args, strict=False):
        if previous in OUTPUT_FLAGS:
            (folder / arg).parent.mkdir(parents=True, exist_ok=True)
            argv.append(arg)
        elif not arg.startswith("--") and (ROOT / arg).exists():
            argv.append(str(ROOT / arg))
        else:
            argv.append(arg)
    return argv


@pytest.mark.slow
@pytest.mark.parametrize("command", RUN_AS_WRITTEN)
def test_cheap_documented_command_runs(command, tmp_path):
    result = subprocess.run(
        as_written_in(tmp_path, command),
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    if "--out" in command or "inference_" in command:
        assert [p for p in tmp_path.rglob("*.png")], "the command wrote no image"
