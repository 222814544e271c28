"""The published ArcFlow adapter format: save, load, hand-made folders and clear errors."""

from __future__ import annotations

import json
import os

import huggingface_hub.constants
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from arcflow.models import load_arcflow_adapter, save_arcflow_adapter

ARCHS = ("flux", "qwen_image")
SIGMA = torch.tensor([0.8, 0.3])

# The documented keys (docs/method.md, Adapter format) for the tiny bases of conftest.py.
HEAD_KEYS = [
    f"{module}.{leaf}"
    for module in ("proj_out_means", "proj_out_logweights", "proj_out_loggamma", "norm_out.linear")
    for leaf in ("weight", "bias")
]
LORA_MODULES = {
    "flux": [
        "time_text_embed.timestep_embedder.linear_1",
        "time_text_embed.timestep_embedder.linear_2",
        "transformer_blocks.0.ff.net.0.proj",
        "transformer_blocks.0.ff.net.2",
        "transformer_blocks.0.ff_context.net.0.proj",
        "transformer_blocks.0.ff_context.net.2",
        "single_transformer_blocks.0.proj_mlp",
        "single_transformer_blocks.0.proj_out",
    ],
    "qwen_image": [
        "time_text_embed.timestep_embedder.linear_1",
        "time_text_embed.timestep_embedder.linear_2",
        "transformer_blocks.0.img_mlp.net.0.proj",
        "transformer_blocks.0.img_mlp.net.2",
        "transformer_blocks.0.txt_mlp.net.0.proj",
        "transformer_blocks.0.txt_mlp.net.2",
        "transformer_blocks.1.img_mlp.net.0.proj",
        "transformer_blocks.1.img_mlp.net.2",
    ],
}
# Published key -> internal parameter of the student, written out by hand.
INTERNAL = {
    "proj_out_means": "proj_out.means",
    "proj_out_logweights": "proj_out.logits",
    "proj_out_loggamma": "proj_out.log_rates",
    "norm_out.linear": "norm_out.linear.student",
}


def documented_keys(arch):
    return set(HEAD_KEYS) | {f"{m}.lora_{ab}.weight" for m in LORA_MODULES[arch] for ab in "AB"}


def outputs(student, tiny, arch):
    x, cond = tiny.latents(), tiny.cond(arch)
    with torch.no_grad():
        policy = student.student_policy(x, SIGMA, cond)
        teacher = student.teacher_velocity(x, SIGMA, cond)
    return policy.velocity_means, policy.logits, policy.log_rates, teacher


@pytest.mark.parametrize("arch", ARCHS)
def test_save_load_round_trip(arch, tiny, tmp_path):
    # alpha = 2 * rank: the saved lora_B carries peft's scale 2, the file says alpha = rank.
    student = tiny.student(arch, lora_rank=2, lora_alpha=4).eval()
    tiny.randomize(student)
    with torch.no_grad():  # fp16-representable weights make the round trip exact
        for _, param in student.trainable_named_parameters():
            param.copy_(param.half())
    save_arcflow_adapter(student, tmp_path / "adapter")
    umask = os.umask(0)
    os.umask(umask)
    modes = {p.stat().st_mode & 0o777 for p in (tmp_path / "adapter").iterdir()}
    assert modes == {0o666 & ~umask}  # as the shipped adapters (0644), not safetensors' 0600

    config = json.loads((tmp_path / "adapter" / "config.json").read_text())
    class_name = {
        "flux": "ArcFluxTransformer2DModel",
        "qwen_image": "ArcQwenImageTransformer2DModel",
    }
    assert config["_class_name"] == class_name[arch]
    assert config["num_gaussians"] == 3 and config["logweights_channels"] == 4
    base_config = tiny.configs[arch]
    for key in ("num_layers", "attention_head_dim", "num_attention_heads", "joint_attention_dim"):
        assert config[key] == base_config[key]
    assert config["in_channels"] == 16 and config["out_channels"] == 16  # per token: C * 2 * 2
    if arch == "flux":
        assert config["num_single_layers"] == 1 and config["guidance_embeds"] is True
    with safe_open(tmp_path / "adapter" / "diffusion_pytorch_model.safetensors", "pt") as f:
        assert f.metadata() == {"policy_config": '{"type": "ArcFlow"}'}
        assert set(f.keys()) == documented_keys(arch)
        assert all(f.get_tensor(key).dtype == torch.float16 for key in f.keys())
        lora_b = LORA_MODULES[arch][0] + ".lora_B.weight"
        internal_b = dict(student.trainable_named_parameters())[
            f"transformer.{LORA_MODULES[arch][0]}.lora_B.default.weight"
        ]
        assert torch.equal(f.get_tensor(lora_b).float(), 2 * internal_b)

    loaded = load_arcflow_adapter(tiny.base(arch), tmp_path, subfolder="adapter")
    assert loaded.num_components == 3 and loaded.lora_rank == loaded.lora_alpha == 2
    for got, want in zip(outputs(loaded, tiny, arch), outputs(student, tiny, arch)):
        assert torch.equal(got, want)


@pytest.mark.parametrize("arch", ARCHS)
def test_attention_adapters_round_trip(arch, tiny, tmp_path):
    """An adapter with LoRA on the attention projections loads with the same targets and output:
    the loader reads the target list from the file's keys."""
    student = tiny.student(arch, lora_attention=True).eval()
    tiny.randomize(student)
    with torch.no_grad():
        for _, param in student.trainable_named_parameters():
            param.copy_(param.half())
    save_arcflow_adapter(student, tmp_path)
    loaded = load_arcflow_adapter(tiny.base(arch), tmp_path)
    assert set(loaded.lora_layers()) == set(student.lora_layers())
    assert any(".attn.to_q" in name for name in loaded.lora_layers())
    for got, want in zip(outputs(loaded, tiny, arch), outputs(student, tiny, arch)):
        assert torch.equal(got, want)


def write_folder(path, arch, tiny, k=5, rank=3, tensors=None, **config_overrides):
    """A published-format folder written from the documented keys, not by our exporter."""
    base_config = tiny.configs[arch]
    config = {
        "_class_name": {
            "flux": "ArcFluxTransformer2DModel",
            "qwen_image": "ArcQwenImageTransformer2DModel",
        }[arch],
        "_diffusers_version": "0.35.0",
        "num_gaussians": k,
        "logweights_channels": 4,
        "in_channels": 16,
        "out_channels": 16 if arch == "qwen_image" else None,
        **{
            key: base_config[key]
            for key in (
                "num_layers",
                "attention_head_dim",
                "num_attention_heads",
                "joint_attention_dim",
            )
        },
        "axes_dims_rope": list(base_config["axes_dims_rope"]),
    }
    if arch == "flux":
        config.update(num_single_layers=1, pooled_projection_dim=32, guidance_embeds=True)
    config.update(config_overrides)
    if tensors is None:
        base = tiny.base(arch)
        inner = base.proj_out.in_features
        gen = torch.Generator().manual_seed(7)
        shapes = {
            "proj_out_means": (k * 16, inner),
            "proj_out_logweights": (k * 4, inner),
            "proj_out_loggamma": ((k - 1) * 4, inner),
            "norm_out.linear": (2 * inner, inner),
        }
        tensors = {}
        for module, (rows, cols) in shapes.items():
            tensors[f"{module}.weight"] = torch.randn(rows, cols, generator=gen).half() * 0.1
            tensors[f"{module}.bias"] = torch.randn(rows, generator=gen).half() * 0.1
        modules = dict(base.named_modules())
        for name in LORA_MODULES[arch]:
            layer = modules[name]
            tensors[f"{name}.lora_A.weight"] = torch.randn(
                rank, layer.in_features, generator=gen
            ).half()
            tensors[f"{name}.lora_B.weight"] = torch.randn(
                layer.out_features, rank, generator=gen
            ).half()
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config))
    save_file(
        tensors,
        path / "diffusion_pytorch_model.safetensors",
        metadata={"policy_config": '{"type": "ArcFlow"}'},
    )
    return tensors


@pytest.mark.parametrize("arch", ARCHS)
def test_hand_made_published_folder_loads(arch, tiny, tmp_path):
    tensors = write_folder(tmp_path, arch, tiny, k=5, rank=3)
    student = load_arcflow_adapter(tiny.base(arch), tmp_path)
    assert student.num_components == 5 and student.lora_rank == 3 and not student.training
    params = dict(student.trainable_named_parameters())
    assert len(params) == len(tensors)
    for key, value in tensors.items():
        module, _, leaf = key.rpartition(".")
        if module in INTERNAL:
            name = f"transformer.{INTERNAL[module]}.{leaf}"
        else:  # <path>.lora_A.weight -> <path>.lora_A.default.weight
            name = f"transformer.{module}.default.{leaf}"
        assert torch.equal(params[name], value.float()), key
    means, logits, log_rates, teacher = outputs(student, tiny, arch)
    assert means.shape == (2, 5, 4, 8, 6) and log_rates.shape == (2, 4, 1, 8, 6)
    assert torch.isfinite(means).all() and torch.isfinite(teacher).all()


def test_round_trip_of_a_published_folder_keeps_every_key(tiny, tmp_path):
    tensors = write_folder(tmp_path / "in", "qwen_image", tiny)
    save_arcflow_adapter(
        load_arcflow_adapter(tiny.base("qwen_image"), tmp_path / "in"), tmp_path / "out"
    )
    with safe_open(tmp_path / "out" / "diffusion_pytorch_model.safetensors", "pt") as f:
        assert set(f.keys()) == set(tensors)
        for key in f.keys():
            assert torch.equal(f.get_tensor(key), tensors[key]), key


def test_bad_folders_fail_naming_the_key(tiny, tmp_path):
    good = write_folder(tmp_path / "good", "flux", tiny)

    def load(name, tensors=None, **config):
        write_folder(tmp_path / name, "flux", tiny, tensors=tensors, **config)
        return load_arcflow_adapter(tiny.base("flux"), tmp_path / name)

    with pytest.raises(ValueError, match=r"proj_out_means\.weight: adapter \(70, 32\)"):
        load("shape", {**good, "proj_out_means.weight": good["proj_out_means.weight"][:70]})
    with pytest.raises(KeyError, match=r"not used.*'extra\.weight'"):
        load("unused", {**good, "extra.weight": torch.zeros(2, dtype=torch.float16)})
    with pytest.raises(KeyError, match=r"missing keys.*norm_out\.linear\.bias"):
        load("missing", {k: v for k, v in good.items() if k != "norm_out.linear.bias"})
    bad_lora = {
        **good,
        "transformer_blocks.0.attn.norm_q.lora_A.weight": torch.zeros(3, 16, dtype=torch.float16),
    }
    with pytest.raises(KeyError, match=r"transformer_blocks\.0\.attn\.norm_q\.lora_A\.weight"):
        load("lora_target", bad_lora)
    with pytest.raises(ValueError, match="LoRA ranks differ"):
        load(
            "ranks",
            {
                **good,
                "transformer_blocks.0.ff.net.2.lora_A.weight": torch.zeros(
                    4, 128, dtype=torch.float16
                ),
            },
        )
    with pytest.raises(ValueError, match="num_layers=2"):
        load("arch", num_layers=2)
    with pytest.raises(
        ValueError, match="unknown ArcFlow adapter class 'GMFluxTransformer2DModel'"
    ):
        load("class", _class_name="GMFluxTransformer2DModel")
    write_folder(tmp_path / "qwen", "qwen_image", tiny)
    with pytest.raises(TypeError, match="expects a QwenImageTransformer2DModel"):
        load_arcflow_adapter(tiny.base("flux"), tmp_path / "qwen")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"missing \['config.json'"):
        load_arcflow_adapter(tiny.base("flux"), tmp_path / "empty")


def test_offline_hub_id_gives_a_clear_error(tiny, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(OSError, match="pass its local path"):
        load_arcflow_adapter(tiny.base("flux"), "nobody/no-such-arcflow-adapter", subfolder="flux")
