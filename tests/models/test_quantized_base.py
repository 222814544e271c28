"""ArcFlow adapters on quantized bases (torchao int8 weight-only, a GGUF file written here), with
the shipped tiny stacks: what stays quantized, what does not, the teacher against the stock
quantized model, and the adapter's load/export round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from arcflow.errors import UserError
from arcflow.models import load_arcflow_adapter, save_arcflow_adapter
from arcflow.models.arch import get_arch
from arcflow.models.quantization import (
    check_scheme,
    dense_weight,
    device_schemes,
    is_quantized,
    load_quantized_transformer,
    quantize_q8_0,
    save_gguf,
)

REPO = Path(__file__).resolve().parents[2]
STACKS = {"flux": "checkpoints/tiny-flux", "qwen_image": "checkpoints/tiny-qwen"}
ADAPTERS = {"flux": "checkpoints/tiny-flux-arcflow", "qwen_image": "checkpoints/tiny-qwen-arcflow"}
SCHEMES = ["int8", "gguf"]
# How each scheme stores a quantized Linear weight.
WEIGHT_TYPES = {"int8": "Int8Tensor", "gguf": "GGUFParameter"}


@pytest.fixture(scope="module")
def gguf_files(tmp_path_factory) -> dict[str, Path]:
    """Q8_0 GGUF files of the tiny transformers, under their diffusers parameter names."""
    folder = tmp_path_factory.mktemp("gguf")
    files = {}
    for arch, stack in STACKS.items():
        base = get_arch(arch).transformer_cls.from_pretrained(REPO / stack, subfolder="transformer")
        files[arch] = save_gguf(base, folder / f"{arch}.gguf")
    return files


def quantized_base(arch: str, scheme: str, gguf_files: dict[str, Path]) -> torch.nn.Module:
    return load_quantized_transformer(
        get_arch(arch).transformer_cls,
        str(REPO / STACKS[arch]),
        scheme,
        torch.float32,
        gguf_files[arch] if scheme == "gguf" else None,
        local_files_only=True,
    ).eval()


def teacher_inputs(arch: str, transformer: torch.nn.Module) -> tuple:
    """Noise, sigma and random conditioning of the transformer's text width (Qwen-Image: with
    negative embeddings, so that the teacher's true CFG runs)."""
    generator = torch.Generator().manual_seed(0)
    channels = get_arch(arch).latent_channels(transformer)
    x = torch.randn(1, channels, 8, 8, generator=generator)
    width = transformer.config.joint_attention_dim
    cond = {"prompt_embeds": torch.randn(1, 7, width, generator=generator)}
    if arch == "flux":
        cond["pooled_prompt_embeds"] = torch.randn(
            1, transformer.config.pooled_projection_dim, generator=generator
        )
    else:
        cond["negative_prompt_embeds"] = torch.randn(1, 5, width, generator=generator)
    return x, torch.tensor([0.7]), cond


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("arch", sorted(STACKS))
def test_adapter_on_quantized_base(arch, scheme, gguf_files):
    stock = quantized_base(arch, scheme, gguf_files)
    base = quantized_base(arch, scheme, gguf_files)
    assert is_quantized(base)
    student = load_arcflow_adapter(base, REPO / ADAPTERS[arch])

    # New modules in the compute dtype, never quantized; the base layers keep their storage.
    for name, param in student.trainable_named_parameters():
        assert type(param.data) is torch.Tensor and param.dtype == torch.float32, name
    head, modulation = base.proj_out, base.norm_out.linear
    assert type(head.teacher_proj.weight).__name__ == WEIGHT_TYPES[scheme]
    assert type(modulation.teacher.weight).__name__ == WEIGHT_TYPES[scheme]
    for path, layer in student.lora_layers().items():
        assert type(layer.get_base_layer().weight).__name__ == WEIGHT_TYPES[scheme], path

    # Teacher mode is the stock quantized model, bit for bit.
    x, sigma, cond = teacher_inputs(arch, stock)
    arch_adapter, scale = get_arch(arch), student.guidance_scale
    with torch.no_grad():
        expected = arch_adapter.teacher_velocity(stock, x, sigma, cond, scale)
        assert torch.equal(student.teacher_velocity(x, sigma, cond), expected)
        # ... and the student differs from it (its LoRA and heads are on).
        assert not torch.equal(student(x, sigma, cond).velocity(sigma), expected)

    with pytest.raises(ValueError, match="quantized"):
        student.merge_lora()


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("arch", sorted(STACKS))
def test_adapter_round_trip_on_quantized_base(arch, scheme, gguf_files, tmp_path):
    student = load_arcflow_adapter(quantized_base(arch, scheme, gguf_files), REPO / ADAPTERS[arch])
    out = save_arcflow_adapter(student, tmp_path / "adapter")
    shipped = load_file(REPO / ADAPTERS[arch] / "diffusion_pytorch_model.safetensors")
    exported = load_file(out / "diffusion_pytorch_model.safetensors")
    assert sorted(exported) == sorted(shipped)
    for key, value in shipped.items():
        assert torch.equal(exported[key], value), key
    configs = [
        json.loads((folder / "config.json").read_text()) for folder in (REPO / ADAPTERS[arch], out)
    ]
    for config in configs:
        config.pop("_diffusers_version")
    assert configs[0] == configs[1]


def test_fresh_student_on_quantized_base_starts_at_the_teacher(gguf_files):
    """A new student (training on a quantized base) initialises its heads from the dequantized
    teacher projection: with no bias noise, its velocity at sigma_src is the teacher's."""
    from arcflow.models import ArcFlowStudent

    base = quantized_base("flux", "int8", gguf_files)
    teacher_weight = dense_weight(base.proj_out, torch.float32)
    student = ArcFlowStudent(base, "flux", num_components=2, lora_rank=2, mean_bias_noise_std=0)
    assert torch.equal(student.head.means.weight, teacher_weight.repeat(2, 1))
    x, sigma, cond = teacher_inputs("flux", base)
    with torch.no_grad():
        velocity = student(x, sigma, cond).velocity(sigma)
        torch.testing.assert_close(velocity, student.teacher_velocity(x, sigma, cond))


def test_schemes_per_device():
    assert device_schemes("cpu") == ["none", "int8", "gguf"]
    with pytest.raises(UserError, match=r"nf4 does not run on cpu.*\['none', 'int8', 'gguf'\]"):
        check_scheme("nf4", "cpu", None)
    with pytest.raises(UserError, match="float8 does not run on cpu"):
        check_scheme("float8", "cpu", None)
    with pytest.raises(UserError, match="needs --gguf FILE"):
        check_scheme("gguf", "cpu", None)
    with pytest.raises(UserError, match="is not a file"):
        check_scheme("gguf", "cpu", "missing.gguf")
    with pytest.raises(UserError, match="--gguf is for --quantize gguf"):
        check_scheme("int8", "cpu", "model.gguf")
    check_scheme("int8", "cpu", None)


def test_q8_0_packing_matches_the_gguf_package():
    import gguf

    weight = torch.randn(6, 96, generator=torch.Generator().manual_seed(0))
    weight[0, :32] = 0  # an all-zero block: scale 0
    weight[1, :32] = torch.arange(32) - 15.5  # values at exact halves of the step
    expected = gguf.quants.quantize(weight.numpy(), gguf.GGMLQuantizationType.Q8_0)
    assert torch.equal(quantize_q8_0(weight), torch.from_numpy(expected))
    with pytest.raises(ValueError, match="multiple of 32"):
        quantize_q8_0(torch.zeros(2, 40))


def test_cuda_schemes_need_a_visible_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    check_scheme("none", "cuda", None)  # no quantization: nothing to check here
    with pytest.raises(UserError, match="cuda is not available here"):
        check_scheme("int8", "cuda", None)
