"""inference_flux.py --image: editing with a FLUX.1 Kontext student from the command line, on a
tiny random FLUX stack; the pixels are the pipeline's, and bad images are one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import FluxTransformer2DModel
from PIL import Image

from arcflow.errors import run_cli
from arcflow.pipelines import ArcFluxKontextPipeline, cli, loading

from .conftest import tiny_adapter


@pytest.fixture(scope="module")
def kontext(tiny_stacks, tmp_path_factory):
    folder = tiny_stacks.model("flux")
    transformer = FluxTransformer2DModel.from_pretrained(folder, subfolder="transformer")
    return folder, tiny_adapter(transformer, "flux_kontext", tmp_path_factory.mktemp("kontext"))


def source_png(path, height=40, width=50):
    pixels = np.random.default_rng(1).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def test_image_flag_edits_with_the_kontext_pipeline(kontext, tmp_path, capsys):
    folder, adapter = kontext
    source = source_png(tmp_path / "source.png")
    args = ["--model", str(folder), "--adapter", str(adapter), "--image", str(source)]
    args += ["--prompt", "make the circle blue", "--max-sequence-length", "16", "--seed", "3"]
    assert cli.run(loading.FLUX, [*args, "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    # Tiny VAE x2 and 2x2 tokens: sides are multiples of 4, so 50 wide becomes 48.
    assert f"--image {source} is 50x40: edited at 48x40 (sides are multiples of 4" in out
    (written,) = (tmp_path / "out").glob("*.png")
    pipe = ArcFluxKontextPipeline.from_pretrained(folder, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_arcflow_adapter(adapter)
    with Image.open(source) as image:
        expected = pipe(
            image.convert("RGB"), "make the circle blue", max_sequence_length=16,
            generator=[torch.Generator().manual_seed(3)],
        ).images[0]  # fmt: skip
    with Image.open(written) as image:
        assert image.size == (48, 40)
        assert np.array_equal(np.asarray(image), np.asarray(expected))
        assert image.text["image"] == str(source) and image.text["prompt"] == "make the circle blue"


def test_edit_mistakes_are_one_line(kontext, tmp_path, capsys):
    folder, adapter = kontext
    base = ["--model", str(folder), "--prompt", "remove the square", "--out", str(tmp_path)]
    cases = [
        (["--adapter", str(adapter), "--image", str(tmp_path / "none.png")], "does not exist"),
        (["--image", str(source_png(tmp_path / "s.png"))], "no ArcFlow adapter of FLUX.1 Kontext"),
    ]
    (tmp_path / "bad.png").write_text("not an image")
    cases.append(
        (["--adapter", str(adapter), "--image", str(tmp_path / "bad.png")], "not a readable image")
    )
    for extra, message in cases:
        assert run_cli(lambda argv: cli.run(loading.FLUX, argv), base + extra) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    with pytest.raises(SystemExit) as exit_info:
        cli.run(loading.QWEN_IMAGE, ["--image", "x.png", "--prompt", "make it blue"])
    assert exit_info.value.code == 2
    assert "editing is not available for Qwen-Image" in capsys.readouterr().err
