"""export_arcflow_to_diffusers: checkpoint -> published adapter -> pipeline, exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from safetensors.torch import load_file, save_file

from arcflow.engine.checkpoint_files import write_manifest
from arcflow.engine.ema import trainable_parameters
from arcflow.flow.sampling import make_noise, sample_student
from arcflow.models import build_student_from_cfg
from arcflow.models.builder import transformer_architecture
from arcflow.models.distiller import ArcFlowDistiller
from arcflow.pipelines import ArcFluxPipeline
from arcflow.pipelines.export import main as export_main

REPO = Path(__file__).resolve().parents[2]
CI_CONFIG = REPO / "configs" / "tiny" / "arcflow_ci_flux.py"


def fp16_exact(shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """float32 values that float16 holds exactly: the format's fp16 cast is then lossless."""
    return (torch.randn(shape, generator=gen) * 0.1).half().float()


@pytest.fixture
def run(tmp_path: Path) -> tuple[Path, Path, dict[str, dict[str, torch.Tensor]]]:
    """A config inheriting the CI FLUX run with its folders in tmp_path, and checkpoint folders
    written by hand in the engine's layout: tensor names are those the checkpoint hook takes from
    the distiller (``student.<trainable name>``)."""
    ckpt_dir = tmp_path / "checkpoints"
    config = tmp_path / "run.py"
    config.write_text(
        f"_base_ = [{str(CI_CONFIG)!r}]\n"
        f"checkpoint_dir = {str(ckpt_dir)!r}\nwork_dir = {str(tmp_path / 'work')!r}\n"
    )
    student = build_student_from_cfg(Config.fromfile(str(config)).model.student, device="meta")
    trainable = trainable_parameters(ArcFlowDistiller(student))
    gen = torch.Generator().manual_seed(0)
    states = {
        kind: {name: fp16_exact(tuple(param.shape), gen) for name, param in trainable.items()}
        for kind in ("trainable", "ema")
    }
    for step in (2, 4):
        folder = ckpt_dir / f"iter_{step:06d}"
        folder.mkdir(parents=True)
        for kind, tensors in states.items():
            save_file(tensors, str(folder / f"{kind}.safetensors"))
        write_manifest(folder)
    (ckpt_dir / "latest").write_text("iter_000004")
    return config, ckpt_dir, states


def test_export_load_sample_roundtrip(run, tiny_stacks, tmp_path):
    """The exported adapter, loaded into the pipeline, samples exactly what the training-time
    student (config + checkpoint tensors) samples; EMA by default, raw with --non-ema."""
    config, ckpt_dir, states = run
    assert export_main([str(config), "--out-dir", str(tmp_path / "ema")]) == 0
    assert (
        export_main(
            [str(config), "--ckpt", str(ckpt_dir / "iter_000002"), "--non-ema"]
            + ["--out-dir", str(tmp_path / "raw")]
        )
        == 0
    )
    student_cfg = Config.fromfile(str(config)).model.student
    # The exported adapter loads onto the tiny stack because both use one FLUX architecture.
    architecture = transformer_architecture("flux", student_cfg.transformer.from_config)
    assert architecture == tiny_stacks.transformer_configs["flux"]
    model = tiny_stacks.model("flux")
    noise = make_noise(2, 4, 8, 8, [torch.Generator().manual_seed(s) for s in (0, 1)])
    prompts = ["a red circle", "a blue square"]
    for kind, adapter in (("ema", tmp_path / "ema"), ("trainable", tmp_path / "raw")):
        pipe = ArcFluxPipeline.from_pretrained(model, local_files_only=True)
        pipe.set_progress_bar_config(disable=True)
        pipe.load_arcflow_adapter(adapter)
        exported = pipe(prompts, height=16, width=16, latents=noise, output_type="latent").images

        student_cfg.transformer.from_pretrained = str(model)
        student = build_student_from_cfg(student_cfg, device="cpu").eval()
        prefix = len("student.")
        student.load_trainable_state_dict({k[prefix:]: v for k, v in states[kind].items()})
        trained = sample_student(student, noise, pipe.encode_cond(prompts), nfe=2)
        assert (exported - trained).abs().max() <= 1e-5


def test_mismatched_checkpoint_is_a_clear_error(run, tmp_path, capsys):
    config, ckpt_dir, states = run
    bad = dict(states["ema"])
    lora_key = next(k for k in bad if ".lora_A." in k)
    del bad[lora_key]
    head_key = "student.transformer.proj_out.means.weight"
    bad[head_key] = torch.zeros(3, 3)
    folder = tmp_path / "bad"
    folder.mkdir()
    save_file(bad, str(folder / "ema.safetensors"))
    assert export_main([str(config), "--ckpt", str(folder), "--out-dir", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert lora_key.removeprefix("student.") in err
    assert "transformer.proj_out.means.weight" in err and "shape" in err
    assert not (tmp_path / "x").exists()

    empty = tmp_path / "empty"
    empty.mkdir()
    assert export_main([str(config), "--ckpt", str(empty), "--out-dir", str(tmp_path / "y")]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_export_verifies_the_checkpoint(run, tmp_path, capsys):
    """A truncated newest checkpoint is named and the previous complete one exported; a broken
    --ckpt is one error line."""
    config, ckpt_dir, states = run
    newest = ckpt_dir / "iter_000004" / "ema.safetensors"
    newest.write_bytes(newest.read_bytes()[:100])
    assert export_main([str(config), "--out-dir", str(tmp_path / "ema")]) == 0
    err = capsys.readouterr().err
    assert "skipping checkpoint" in err and "iter_000004" in err and "ema.safetensors has" in err
    exported = load_file(str(tmp_path / "ema" / "diffusion_pytorch_model.safetensors"))
    assert len(exported) == len(states["ema"])

    args = [str(config), "--ckpt", str(ckpt_dir / "iter_000004"), "--out-dir", str(tmp_path / "x")]
    assert export_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: checkpoint") and "unusable" in err and "\n" not in err
    assert not (tmp_path / "x").exists()


def test_out_dir_that_is_a_file_is_a_clear_error(run, tmp_path, capsys):
    config, _, _ = run
    existing = tmp_path / "adapter.txt"
    existing.write_text("mine")
    assert export_main([str(config), "--out-dir", str(existing)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: --out-dir {existing} is an existing file, not a folder: name a folder"
    assert existing.read_text() == "mine"
