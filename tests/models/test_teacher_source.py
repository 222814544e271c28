"""Distilling your own model: a teacher built as base + LoRAs merged at their weights equals the
base with those LoRAs applied by diffusers' own adapter code; the adapter records that teacher and
warns in one line when it is loaded on another model."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict

from arcflow.models.adapter_format import load_arcflow_adapter, save_arcflow_adapter
from arcflow.models.arch import get_arch
from arcflow.models.builder import build_student_from_cfg
from arcflow.models.loading import load_base_transformer
from arcflow.models.teacher_source import (
    TEACHER_FILE,
    mismatch_note,
    read_teacher_record,
)
from arcflow.pipelines import cli, loading

ROOT = Path(__file__).resolve().parents[2]
STACKS = {"flux": ROOT / "checkpoints/tiny-flux", "qwen_image": ROOT / "checkpoints/tiny-qwen"}
STUDENT = dict(num_components=3, lora_rank=2, lora_alpha=2, lora_dropout=0.0)


def make_lora(arch: str, folder: Path, seed: int = 0) -> Path:
    """A random rank-4 LoRA of the tiny base's MLPs, saved as diffusers saves LoRAs."""
    adapter = get_arch(arch)
    transformer = load_base_transformer(STACKS[arch], arch)
    targets = adapter.lora_targets(transformer)[:6]
    transformer.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=targets), "style")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in transformer.named_parameters():
            if "lora_" in name:
                param.copy_(0.2 * torch.randn(param.shape, generator=gen))
    layers = get_peft_model_state_dict(transformer, adapter_name="style")
    adapter.text_pipeline_cls.save_lora_weights(folder, transformer_lora_layers=layers)
    return folder / "pytorch_lora_weights.safetensors"


def inputs(student, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    config = student.transformer.config
    x = torch.randn(2, student.latent_channels, 16, 16, generator=gen)
    lengths = (8, 4)
    cond = student.arch.random_cond(
        config,
        2,
        lengths,
        lambda *shape: torch.randn(shape, generator=gen),
        lambda tokens: torch.ones(2, tokens, dtype=torch.long),
    )
    return x, torch.full((2,), 0.8), cond


@pytest.mark.parametrize("arch", sorted(STACKS))
def test_merged_teacher_is_the_base_with_the_lora_applied(arch, tmp_path):
    lora = make_lora(arch, tmp_path / "lora")
    transformer = dict(from_pretrained=str(STACKS[arch]), subfolder="transformer")
    with_lora = dict(transformer, merge_loras=[dict(path=str(lora), weight=0.7)])
    merged = build_student_from_cfg(dict(arch=arch, transformer=with_lora, **STUDENT), "cpu")
    plain = build_student_from_cfg(dict(arch=arch, transformer=transformer, **STUDENT), "cpu")
    # Independently: the base with the LoRA as a live (unfused) peft adapter at weight 0.7.
    reference = load_base_transformer(STACKS[arch], arch)
    reference.load_lora_adapter(str(lora), prefix="transformer", adapter_name="style")
    reference.set_adapters(["style"], [0.7])

    x, sigma, cond = inputs(merged)
    guidance = merged.guidance_scale
    with torch.no_grad():
        ours = merged.teacher_velocity(x, sigma, cond)
        theirs = merged.arch.teacher_velocity(reference, x, sigma, cond, guidance)
        base = plain.teacher_velocity(x, sigma, cond)
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=1e-4)
    assert (ours - base).abs().max() > 1e-2  # the LoRA changes the teacher
    # No LoRA layer of the teacher is left: the student's own is the only adapter.
    assert list(merged.transformer.peft_config) == [merged.adapter_name]
    digest = hashlib.sha256(lora.read_bytes()).hexdigest()[:12]
    assert merged.teacher_source == {
        "base": str(STACKS[arch]),
        "loras": [{"name": lora.name, "weight": 0.7, "sha256": digest}],
    }


def test_the_adapter_carries_its_teacher_and_warns_elsewhere(tmp_path, capsys):
    lora = make_lora("flux", tmp_path / "lora")
    transformer = dict(
        from_pretrained=str(STACKS["flux"]),
        subfolder="transformer",
        merge_loras=[dict(path=str(lora), weight=0.5)],
    )
    student = build_student_from_cfg(dict(arch="flux", transformer=transformer, **STUDENT), "cpu")
    out = save_arcflow_adapter(student, tmp_path / "adapter")
    record = json.loads((out / TEACHER_FILE).read_text())
    assert record["base"] == str(STACKS["flux"]) and record["loras"][0]["weight"] == 0.5
    loaded = load_arcflow_adapter(load_base_transformer(STACKS["flux"], "flux"), out)
    assert loaded.teacher_source == record == read_teacher_record(out)

    # The command line on the plain tiny base, without the LoRA: one warning line, then images.
    args = ["--preset", "tiny", "--adapter", str(out), "--prompt", "a red circle", "--nfe", "1"]
    assert cli.run(loading.FLUX, [*args, "--out", str(tmp_path / "a")]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "distilled from" in line]
    assert warnings == [
        f"warning: this adapter was distilled from {STACKS['flux']} + {lora.name}:0.5; it is "
        f"loaded without --lora {lora.name}:0.5, so its 2 steps follow a teacher this model is not"
    ]
    # With the LoRA at its weight the teacher is the one it was distilled from: no warning.
    again = [*args, "--lora", f"{lora}:0.5", "--out", str(tmp_path / "b")]
    assert cli.run(loading.FLUX, again) == 0
    assert "distilled from" not in capsys.readouterr().err


def test_mismatch_note_names_what_differs():
    record = {"base": "Qwen/Qwen-Image-2512", "loras": [{"name": "ink.safetensors", "weight": 0.8}]}
    same = [("/loras/ink.safetensors", 0.8)]
    assert mismatch_note(record, "/models/Qwen-Image-2512/", same) is None  # a download of it
    assert mismatch_note(None, "anything", []) is None  # a published adapter: nothing recorded
    other = mismatch_note(record, "Qwen/Qwen-Image", same)
    tail = "it is loaded on Qwen/Qwen-Image, so its 2 steps follow a teacher this model is not"
    assert other.endswith(tail)
    both = mismatch_note(record, "Qwen/Qwen-Image", [("ink.safetensors", 0.4)])
    assert "loaded on Qwen/Qwen-Image and without --lora ink.safetensors:0.8" in both


def test_bad_merge_loras_entries_are_named(tmp_path):
    transformer = dict(from_pretrained=str(STACKS["flux"]), subfolder="transformer")
    for entries, error, message in [
        ([dict(path="x.safetensors", wieght=0.5)], KeyError, r"unknown keys \['wieght'\]"),
        (["x.safetensors"], ValueError, r"merge_loras\[0\] must be dict\(path=..., weight=...\)"),
        ([dict(path=str(tmp_path / "none.safetensors"))], ValueError, "could not merge the LoRA"),
    ]:
        cfg = dict(arch="flux", transformer=dict(transformer, merge_loras=entries), **STUDENT)
        with pytest.raises(error, match=message):
            build_student_from_cfg(cfg, "cpu")
