"""The web demo served in process on the shipped tiny FLUX stack, and the inference CLI's images
for the same settings (the pixels every demo test must reproduce)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from arcflow.app.demo import Demo
from arcflow.app.page import PageDefaults, build_page, launch
from arcflow.app.server import parse_args
from arcflow.pipelines import cli, loading

# Two prompts at seeds 0 and 1: one CLI run gives both, as image 0 and image 1.
PROMPTS = ("a red circle at the top left", "a blue square at the bottom right")
TEACHER_STEPS = 50  # the page's default


@dataclass(frozen=True)
class Served:
    url: str
    demo: Demo


@dataclass(frozen=True)
class Reference:
    """The CLI's PNGs of ``prompt`` at ``seed``: the student's and student | teacher."""

    prompt: str
    seed: int
    teacher_steps: int
    student: Path
    compare: Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def port() -> int:
    """A local port that was free a moment ago."""
    return free_port()


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``python app.py`` (the tiny FLUX stack) in this process, on a free local port."""
    port = free_port()
    out = tmp_path_factory.mktemp("app_out")
    spec, args, _ = parse_args(["--port", str(port), "--out", str(out)])
    demo = Demo(spec, cli.load_from_args(spec, args), args.out)
    demo.warm_up()
    page = build_page(demo, PageDefaults(show_size=False))
    launch(page, demo, args.host, args.port, prevent_thread_lock=True, quiet=True)
    yield Served(f"http://{args.host}:{port}/", demo)
    page.close()


@pytest.fixture(scope="session")
def references(tmp_path_factory: pytest.TempPathFactory) -> list[Reference]:
    """``inference_flux.py --preset tiny`` for :data:`PROMPTS` with the teacher comparison."""
    out = tmp_path_factory.mktemp("cli_out")
    argv = ["--preset", "tiny", "--seed", "0", "--teacher-steps", str(TEACHER_STEPS)]
    for prompt in PROMPTS:
        argv += ["--prompt", prompt]
    assert cli.run(loading.FLUX, argv + ["--out", str(out)]) == 0
    found = []
    for seed, prompt in enumerate(PROMPTS):
        student = cli.image_path(out, seed, len(PROMPTS), prompt)
        found.append(
            Reference(
                prompt,
                seed,
                TEACHER_STEPS,
                student,
                student.with_name(f"{student.stem}_vs_teacher.png"),
            )
        )
    return found


def read_png(path: str | Path) -> tuple[np.ndarray, dict[str, str]]:
    with Image.open(path) as image:
        return np.asarray(image), dict(image.text)


@pytest.fixture(scope="session")
def png() -> Callable[[str | Path], tuple[np.ndarray, dict[str, str]]]:
    """Pixels and text chunks (the settings) of a PNG file."""
    return read_png
