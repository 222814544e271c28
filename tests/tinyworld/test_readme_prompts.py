"""The README's tiny-world examples draw what they say: each ``--preset tiny ... --prompt "..."``
command of the README, docs/tiny_world.md and docs/inference.md, sampled as written (seed 0,
2 NFE, the shipped student), is read back right by the attribute evaluator."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from arcflow.pipelines import cli, loading
from arcflow.tinyworld.evaluator import AttributeEvaluator
from arcflow.tinyworld.scoring import to_signed

REPO = Path(__file__).resolve().parents[2]
DOCS = ("README.md", "docs/tiny_world.md", "docs/inference.md")
SCRIPTS = {"inference_flux.py": "flux", "inference_qwen.py": "qwen_image"}
COMMAND = re.compile(
    r"python (inference_\w+\.py) --preset tiny (?:--\S+ \S+ )*--prompt \"([^\"]+)\""
)


def documented_examples() -> list[tuple[str, str]]:
    """(arch, prompt) of every tiny inference example in the docs, without repeats."""
    found = []
    for doc in DOCS:
        for script, prompt in COMMAND.findall((REPO / doc).read_text()):
            if (SCRIPTS[script], prompt) not in found:
                found.append((SCRIPTS[script], prompt))
    return found


def test_the_docs_have_tiny_examples():
    assert {arch for arch, _ in documented_examples()} == {"flux", "qwen_image"}


@pytest.mark.parametrize("arch, prompt", documented_examples())
def test_a_documented_example_draws_what_it_says(arch, prompt):
    spec = loading.SPECS[arch].under(REPO)
    parser = cli.build_parser(spec)
    loaded = cli.load_from_args(spec, parser.parse_args(["--preset", "tiny", "--prompt", prompt]))
    (image,) = cli.sample(loaded.pipe, prompt, 0, [0], loaded.call)
    pixels = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)[None]
    evaluator = AttributeEvaluator.from_pretrained(REPO / "checkpoints" / "tiny-evaluator")
    score = evaluator.score(to_signed(pixels), [prompt])
    assert score.match.tolist() == [True], f"{prompt!r} ({arch}): {score.accuracy}"
