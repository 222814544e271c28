"""Quantized base transformers: which scheme runs where, loading a base with one, and reading a
quantized layer's weight back in the compute dtype.

Schemes (the command line's ``--quantize``; docs/inference.md):

- ``none``: the base in ``--dtype``;
- ``int8``: torchao int8 weight-only (per-row scales), CPU and CUDA;
- ``float8``: torchao float8 (e4m3) weight-only, CUDA GPUs of compute capability >= 8.9;
- ``nf4``: bitsandbytes 4-bit NormalFloat, CUDA only and bitsandbytes installed by hand (it is
  not in requirements.txt: on a CPU machine its import prints warnings);
- ``gguf``: a GGUF file of the transformer (``--gguf FILE``) read by diffusers' single-file
  loader, CPU and CUDA (dequantized layer by layer in each forward on a CPU).

Only the base transformer's Linear weights are quantized: the ArcFlow heads, the student's copy
of ``norm_out.linear`` and the LoRA are created in the compute dtype (they are small), and the
teacher runs the stock quantized layers untouched.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from diffusers import ModelMixin
from peft.utils.integrations import dequantize_module_weight
from torch import nn

from arcflow.errors import UserError

SCHEMES = ("none", "int8", "float8", "nf4", "gguf")
# What a scheme needs besides the device: the package and how to get it.
_PACKAGES = {
    "int8": ("torchao", "pip install torchao==0.18.0"),
    "float8": ("torchao", "pip install torchao==0.18.0"),
    "nf4": ("bitsandbytes", "pip install bitsandbytes (CUDA machines only)"),
    "gguf": ("gguf", "pip install gguf==0.19.0"),
}
# float8 matmuls need Ada or Hopper tensor cores.
_FLOAT8_CAPABILITY = (8, 9)


def device_schemes(device: str | torch.device) -> list[str]:
    """The schemes whose kernels run on ``device`` (installed packages aside)."""
    device = torch.device(device)
    if device.type != "cuda":
        return ["none", "int8", "gguf"]
    schemes = ["none", "int8"]
    if torch.cuda.get_device_capability(device) >= _FLOAT8_CAPABILITY:
        schemes.append("float8")
    return [*schemes, "nf4", "gguf"]


def check_scheme(scheme: str, device: str | torch.device, gguf_file: str | Path | None) -> None:
    """UserError (one line: what runs on this device, what to install) unless ``scheme`` can load
    and run on ``device``; ``gguf_file`` must name an existing file exactly when scheme is gguf."""
    if scheme not in SCHEMES:
        raise UserError(f"--quantize {scheme!r} is not a scheme: choose one of {list(SCHEMES)}")
    runnable = device_schemes(device)
    if scheme not in runnable:
        raise UserError(
            f"--quantize {scheme} does not run on {device}: there, choose one of {runnable}"
            + (" (nf4 and float8 need a CUDA GPU)" if torch.device(device).type != "cuda" else "")
        )
    if scheme in _PACKAGES:
        package, install = _PACKAGES[scheme]
        if importlib.util.find_spec(package) is None:
            raise UserError(f"--quantize {scheme} needs the {package} package: {install}")
    if scheme == "gguf":
        if gguf_file is None:
            raise UserError("--quantize gguf needs --gguf FILE, the transformer's .gguf file")
        if not Path(gguf_file).expanduser().is_file():
            raise UserError(f"--gguf {gguf_file} is not a file: name the transformer's .gguf file")
    elif gguf_file is not None:
        raise UserError(f"--gguf is for --quantize gguf, not --quantize {scheme}: drop one")


def quantization_config(scheme: str, dtype: torch.dtype) -> object | None:
    """diffusers' quantization config of a scheme that quantizes at load time (None: none)."""
    if scheme == "none":
        return None
    if scheme in ("int8", "float8"):
        from diffusers import TorchAoConfig
        from torchao.quantization import Float8WeightOnlyConfig, Int8WeightOnlyConfig

        config = Int8WeightOnlyConfig() if scheme == "int8" else Float8WeightOnlyConfig()
        return TorchAoConfig(config)
    if scheme == "nf4":
        from diffusers import BitsAndBytesConfig

        return BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype
        )
    if scheme == "gguf":
        from diffusers import GGUFQuantizationConfig

        return GGUFQuantizationConfig(compute_dtype=dtype)
    raise ValueError(f"unknown quantization scheme {scheme!r}; known: {list(SCHEMES)}")


def load_quantized_transformer(
    transformer_cls: type[ModelMixin],
    model: str,
    scheme: str,
    dtype: torch.dtype,
    gguf_file: str | Path | None = None,
    local_files_only: bool = False,
) -> ModelMixin:
    """The ``transformer`` of pipeline folder / Hub id ``model`` quantized with ``scheme``; with
    gguf, the weights come from ``gguf_file`` and the config from ``model``'s transformer.

    A GGUF file holds either the diffusers parameter names or the original release's layout
    (converted by diffusers' single-file loader)."""
    config = quantization_config(scheme, dtype)
    if scheme == "gguf":
        return transformer_cls.from_single_file(
            str(Path(gguf_file).expanduser()),
            config=model,
            subfolder="transformer",
            quantization_config=config,
            torch_dtype=dtype,
            local_files_only=local_files_only,
        )
    return transformer_cls.from_pretrained(
        model,
        subfolder="transformer",
        quantization_config=config,
        torch_dtype=dtype,
        local_files_only=local_files_only,
    )


def is_quantized(model: nn.Module) -> bool:
    """Whether diffusers loaded ``model`` with a quantization config."""
    return bool(getattr(model, "is_quantized", False))


def dense_weight(layer: nn.Linear, dtype: torch.dtype) -> torch.Tensor:
    """``layer``'s weight as a plain ``(out, in)`` tensor in ``dtype``: dequantized from torchao,
    bitsandbytes or GGUF storage, or the weight itself when it is not quantized."""
    weight = layer.weight
    if hasattr(weight, "quant_type"):  # diffusers' GGUFParameter: packed GGML blocks
        from diffusers.quantizers.gguf.utils import dequantize_gguf_tensor

        return dequantize_gguf_tensor(weight).to(dtype)
    return dequantize_module_weight(layer).detach().to(dtype)


@torch.no_grad()
def save_gguf(transformer: ModelMixin, path: str | Path, quant_type: str = "Q8_0") -> Path:
    """Write ``transformer``'s weights as a GGUF file under its diffusers parameter names, every
    Linear weight whose rows fit the GGML block size in ``quant_type`` (e.g. ``Q8_0``), the rest
    in float32. diffusers' single-file loader takes such a file as is (its names are the model's),
    so a fine-tuned base can be quantized without the original release's layout. Returns
    ``path``."""
    import gguf

    qtype = gguf.GGMLQuantizationType[quant_type]
    block_size, _ = gguf.GGML_QUANT_SIZES[qtype]
    linear_weights = {
        f"{name}.weight"
        for name, module in transformer.named_modules()
        if isinstance(module, nn.Linear)
    }
    path = Path(path)
    writer = gguf.GGUFWriter(path, type(transformer).__name__)
    for name, tensor in transformer.state_dict().items():
        array = tensor.detach().float().cpu().numpy()
        if name in linear_weights and array.shape[-1] % block_size == 0:
            writer.add_tensor(name, gguf.quants.quantize(array, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
