"""The demo's ``/generate`` endpoint through Gradio's own client, served in this process: the CLI's
pixels and metadata, sessions kept apart under concurrent requests, input errors as messages."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from arcflow.app.demo import MAX_NFE, InputError, Request
from arcflow.app.page import timing_text


def client(served, folder: Path) -> Client:
    return Client(served.url, verbose=False, download_files=folder, analytics_enabled=False)


def generate(api: Client, prompt: str, seed: int, **settings) -> tuple:
    """``(request images, timing, downloads, session gallery, seed)`` for the tiny FLUX page,
    with the CLI's settings of the ``references`` fixture unless ``settings`` say otherwise."""
    values = dict(nfe=2, guidance=7.0, image_height=64, image_width=64, num_images=1)
    values.update(compare=False, random_seed=False)
    values.update(settings)
    return api.predict(prompt=prompt, seed=seed, api_name="/generate", **values)


@pytest.fixture
def assert_same_png(png):
    def check(path: str | Path, reference: Path) -> None:
        pixels, text = png(path)
        expected_pixels, expected_text = png(reference)
        assert np.array_equal(pixels, expected_pixels)
        assert text == expected_text

    return check


def test_same_settings_give_the_cli_pixels_and_metadata(
    served, references, tmp_path, assert_same_png
):
    reference = references[0]
    shown, timing, files, gallery, seed = generate(
        client(served, tmp_path),
        reference.prompt,
        reference.seed,
        compare=True,
        teacher_steps=reference.teacher_steps,
    )
    assert seed == reference.seed
    student, compare = sorted(files, key=lambda name: "_vs_teacher" in name)
    assert Path(student).name == reference.student.name
    assert_same_png(student, reference.student)
    assert_same_png(compare, reference.compare)
    # Comparing, the page shows student | teacher, with the seconds of each sampler.
    assert [Path(item["image"]).name for item in shown] == [reference.compare.name]
    assert "2 NFE" in timing and f"teacher**, {reference.teacher_steps} Euler steps" in timing
    assert len(gallery) == 1


def test_concurrent_sessions_get_their_own_images(served, references, tmp_path, assert_same_png):
    first, second = client(served, tmp_path / "a"), client(served, tmp_path / "b")
    # An earlier image of the first session: it must stay in its gallery, out of the second's.
    generate(first, references[1].prompt, 5)
    with ThreadPoolExecutor(2) as pool:
        jobs = [
            pool.submit(generate, api, reference.prompt, reference.seed)
            for api, reference in zip((first, second), references)
        ]
        results = [job.result(timeout=120) for job in jobs]
    for (_, _, files, _, _), reference in zip(results, references):
        assert_same_png(files[0], reference.student)
    captions = [[item["caption"] for item in result[3]] for result in results]
    assert captions == [
        [f"{references[1].prompt} (2 NFE), seed 5", f"{references[0].prompt} (2 NFE), seed 0"],
        [f"{references[1].prompt} (2 NFE), seed 1"],
    ]


def test_random_seed_is_reported_and_recorded(served, references, tmp_path, png):
    shown, _, files, _, seed = generate(
        client(served, tmp_path), references[0].prompt, 0, random_seed=True, num_images=2
    )
    assert [png(path)[1]["seed"] for path in sorted(files, key=lambda path: Path(path).name)] == [
        str(seed),
        str(seed + 1),
    ]
    assert [item["caption"] for item in shown] == [f"seed {seed}", f"seed {seed + 1}"]


@pytest.mark.parametrize(
    "prompt, settings, message",
    [
        ("   ", {}, "the prompt is empty: type what the image should show"),
        ("a cat", dict(image_height=50), "height 50 cannot be sampled by this model"),
        ("a cat", dict(nfe=MAX_NFE + 1), f"greater than maximum value {MAX_NFE}"),  # the slider's
    ],
)
def test_bad_input_is_a_message(served, tmp_path, prompt, settings, message):
    with pytest.raises(AppError) as error:
        generate(client(served, tmp_path), prompt, 0, **settings)
    assert message in str(error.value) and "Traceback" not in str(error.value)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(width=65), r"width 65 cannot be sampled by this model: .* of 8 \(try 64 or 72\)"),
        (dict(height=4096), "height must be from 8 to 2048, got 4096"),
        (dict(nfe=0), "NFE must be from 1 to 8, got 0"),
        (dict(nfe=1.5), "NFE must be a whole number"),
        (dict(seed=-1), "seed must be from 0 to"),
        (dict(num_images=5), "number of images must be from 1 to 4, got 5"),
        (dict(guidance_scale=float("nan")), "guidance must be a number from 0 to 20, got nan"),
        (dict(teacher_steps=0), "teacher steps must be from 1 to 200, got 0"),
    ],
)
def test_each_setting_is_checked(served, change, message):
    request = dataclasses.replace(Request("a cat", 0, 2, 7.0), **change)
    with pytest.raises(InputError, match=message):
        served.demo.check(request)


def test_the_page_names_the_model_it_serves(served):
    """The tiny stack is not FLUX.1-dev: the title names the folder and its architecture."""
    assert served.demo.model_name == "tiny-flux (FLUX.1-dev architecture)"


def test_a_prompt_the_model_cannot_read_whole_is_said(served):
    """The tiny FLUX stack reads 32 T5 tokens: a longer prompt still samples, with a note (the
    page shows it as a warning) rather than a silent cut."""
    long_prompt = "a red circle at the top left and " * 10
    result = served.demo.generate(Request(long_prompt, 0, 1))
    assert result.note is not None and "reads only the first 32" in result.note
    assert served.demo.generate(Request("a red circle at the top left", 0, 1)).note is None


def test_several_images_compared_show_their_diversity(served, tmp_path, png):
    """Three images of one prompt beside the teacher's: the page gives the student's diversity
    over the teacher's, the value an independent numpy computation reads off the written
    student | teacher PNGs (each half averaged over 2 x 2 blocks to 32 x 32, distances between
    the 3 pairs of seeds, ratio of the means)."""
    _, timing, files, _, _ = generate(
        client(served, tmp_path), "a red circle", 3, num_images=3, compare=True, teacher_steps=8
    )
    halves = {"student": [], "teacher": []}
    for path in sorted(f for f in files if "_vs_teacher" in f):
        pixels = png(path)[0].astype(np.float64) / 255.0  # (64, 128, 3): student | teacher
        for name, half in zip(halves, (pixels[:, :64], pixels[:, 64:])):
            halves[name].append(half.reshape(32, 2, 32, 2, 3).mean(axis=(1, 3)).ravel())
    means = {}
    for name, features in halves.items():
        pairs = [(0, 1), (0, 2), (1, 2)]
        means[name] = np.mean([np.linalg.norm(features[i] - features[j]) for i, j in pairs])
    ratio = means["student"] / means["teacher"]
    assert f"**Diversity** of these 3 images: **{ratio:.2f}x** the teacher's" in timing
    assert "over 3 pairs" in timing


def test_one_image_for_every_seed_reads_zero_diversity(served, monkeypatch):
    """A student that ignores the seed (the collapse few-step models are accused of) reads 0."""
    from arcflow.app import demo as demo_module

    honest = demo_module.sample

    def collapsed(pipe, prompt, seed, indices, call, teacher_steps=None):
        images = honest(pipe, prompt, seed, indices, call, teacher_steps)
        return images if teacher_steps else [images[0]] * len(images)

    monkeypatch.setattr(demo_module, "sample", collapsed)
    result = served.demo.generate(Request("a blue square in the center", 0, 2, num_images=4,
                                          teacher_steps=4))  # fmt: skip
    assert result.diversity == (0.0, 0.0)
    assert "**0.00x** the teacher's (95 % interval 0.00-0.00 over 6 pairs" in timing_text(result)
    # Without the teacher there is nothing to be relative to.
    assert served.demo.generate(Request("a blue square", 0, 2, num_images=2)).diversity is None
