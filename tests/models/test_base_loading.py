"""Base transformers: full-size on the meta device, tiny from dicts, local folders, offline Hub ids,
and students built from config dicts."""

from __future__ import annotations

import subprocess
import sys

import huggingface_hub.constants
import pytest
import torch
from diffusers import FluxTransformer2DModel, QwenImageTransformer2DModel

from arcflow.errors import UserError
from arcflow.models import build_student_from_cfg, build_transformer, load_base_transformer


def test_full_size_architectures_on_meta():
    flux = build_transformer("flux", "full")
    qwen = build_transformer("qwen_image", "full")
    assert isinstance(flux, FluxTransformer2DModel) and isinstance(
        qwen, QwenImageTransformer2DModel
    )
    assert flux.proj_out.weight.is_meta and qwen.proj_out.weight.is_meta
    # FLUX.1-dev and Qwen-Image as published (transformer/config.json of each repository).
    assert sum(p.numel() for p in flux.parameters()) == 11_901_408_320
    assert sum(p.numel() for p in qwen.parameters()) == 20_430_401_088
    assert flux.config.guidance_embeds and flux.proj_out.out_features == 64
    assert qwen.proj_out.out_features == 64


def test_tiny_config_typo_fails_loudly(tiny):
    with pytest.raises(TypeError, match="num_layer"):
        build_transformer("flux", {**tiny.configs["flux"], "num_layer": 1}, device="cpu")
    with pytest.raises(ValueError, match="unknown architecture 'sd3'"):
        build_transformer("sd3", {})


def test_local_folder_loads(tiny, tmp_path):
    base = tiny.base("qwen_image")
    base.save_pretrained(tmp_path / "pipeline" / "transformer")
    from_pipeline = load_base_transformer(
        tmp_path / "pipeline", "qwen_image", torch_dtype="bfloat16"
    )
    from_folder = load_base_transformer(str(tmp_path / "pipeline" / "transformer"), "qwen_image")
    assert from_pipeline.proj_out.weight.dtype == torch.bfloat16
    for (name, ours), theirs in zip(base.state_dict().items(), from_folder.state_dict().values()):
        assert torch.equal(ours, theirs), name
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="missing .*config.json"):
        load_base_transformer(tmp_path / "empty", "qwen_image")
    with pytest.raises(TypeError, match="expects a FluxTransformer2DModel"):
        load_base_transformer(tmp_path / "pipeline", "flux")


def test_offline_hub_id_gives_a_clear_error(monkeypatch):
    """A UserError (tools/train.py prints it as one line, exit 2), and an OSError as the
    libraries' own load errors are."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserError, match="nobody/no-such-model/transformer.*local diffusers folder"):
        load_base_transformer("nobody/no-such-model", "flux")
    with pytest.raises(OSError):
        load_base_transformer("nobody/no-such-model", "flux")


def test_student_from_config_dict(tiny, tmp_path):
    cfg = dict(
        arch="flux",
        transformer=dict(from_config=tiny.configs["flux"]),
        num_components=2,
        lora_rank=2,
        lora_alpha=2,
    )
    student = build_student_from_cfg(cfg, device="cpu")
    assert student.num_components == 2 and student.latent_channels == 4
    assert not student.transformer.proj_out.teacher_proj.weight.is_meta
    with pytest.raises(TypeError, match="lora_rnak"):
        build_student_from_cfg({**cfg, "lora_rnak": 4}, device="cpu")
    with pytest.raises(TypeError, match="form_config"):
        build_student_from_cfg({**cfg, "transformer": dict(form_config="full")})

    tiny.base("flux").save_pretrained(tmp_path / "flux")
    pretrained = dict(from_pretrained=str(tmp_path / "flux"), subfolder=None)
    loaded = build_student_from_cfg({**cfg, "transformer": pretrained}, device="cpu")
    assert loaded.latent_channels == 4
    # On meta, a from_pretrained-only entry takes the architecture from config.json, reads no weight
    on_meta = build_student_from_cfg({**cfg, "transformer": pretrained}, device="meta")
    shapes = {name: p.shape for name, p in loaded.named_parameters()}
    assert {name: p.shape for name, p in on_meta.named_parameters()} == shapes
    assert all(p.is_meta for p in on_meta.parameters())
    mismatch = dict(pretrained, from_config={**tiny.configs["flux"], "num_layers": 2})
    with pytest.raises(ValueError, match="num_layers=1, the config expects 2"):
        build_student_from_cfg({**cfg, "transformer": mismatch}, device="cpu")


def test_named_architectures_come_from_the_registry():
    """``from_config`` names resolve through arcflow.registry.ARCHITECTURES. The tiny world's
    sizes are there once arcflow.tinyworld.architectures is imported (its configs import it), and
    a name asked for before says so; the core never imports the tiny world itself."""
    code = (
        "import sys\n"
        "from arcflow.models import build_transformer\n"
        "try:\n"
        "    build_transformer('flux', 'tiny')\n"
        "except ValueError as error:\n"
        "    assert 'arcflow.tinyworld.architectures' in str(error), error\n"
        "else:\n"
        "    raise AssertionError('a tiny size resolved before arcflow.tinyworld was imported')\n"
        "assert 'arcflow.tinyworld' not in sys.modules\n"
        "import arcflow.tinyworld.architectures\n"
        "t = build_transformer('flux', 'tiny')\n"
        "print(t.config.num_single_layers, t.config.in_channels)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["2", "64"]
    with pytest.raises(ValueError, match=r"no transformer architecture named 'huge'.*'tiny'"):
        build_transformer("flux", "huge")
    toy = build_transformer("qwen_image", "toy", device="cpu")
    assert toy.config.num_layers == 2 and toy.config.out_channels == 4
