"""Quantized base transformers: which scheme runs where, loading a base with one, and reading a
quantized layer's weight back in the compute dtype.

Schemes (the command line's ``--quantize``; docs/quantization.md):

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
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from diffusers import ModelMixin
from peft.utils.integrations import dequantize_module_weight
from torch import nn

from arcflow.errors import UserError

if TYPE_CHECKING:
    from diffusers.quantizers.quantization_config import QuantizationConfigMixin

SCHEMES = ("none", "int8", "float8", "nf4", "gguf")
# What a scheme needs besides the device: the package and how to get it.
_PACKAGES = {
    "int8": ("torchao", "pip install -r requirements.txt (it pins torchao)"),
    "float8": ("torchao", "pip install -r requirements.txt (it pins torchao)"),
    "nf4": ("bitsandbytes", "pip install bitsandbytes (CUDA machines only)"),
    "gguf": ("gguf", "pip install -r requirements.txt (it pins gguf)"),
}
# float8 matmuls need Ada or Hopper tensor cores.
_FLOAT8_CAPABILITY = (8, 9)


def device_schemes(device: str | torch.device) -> list[str]:
    """The schemes whose kernels run on ``device`` (installed packages aside)."""
    device = torch.device(device)
    if device.type != "cuda":
        return ["none", "int8", "gguf"]
    if not torch.cuda.is_available():
        raise UserError(f"device {device} is not available here: no CUDA GPU is visible")
    schemes = ["none", "int8"]
    if torch.cuda.get_device_capability(device) >= _FLOAT8_CAPABILITY:
        schemes.append("float8")
    return [*schemes, "nf4", "gguf"]


def missing_package(scheme: str) -> str | None:
    """``"needs the X package: pip install ..."`` when ``scheme``'s package is not installed."""
    if scheme not in _PACKAGES:
        return None
    package, install = _PACKAGES[scheme]
    if importlib.util.find_spec(package) is not None:
        return None
    return f"needs the {package} package: {install}"


def check_scheme(scheme: str, device: str | torch.device, gguf_file: str | Path | None) -> None:
    """UserError (one line: what runs on this device, what to install) unless ``scheme`` can load
    and run on ``device``; ``gguf_file`` must name an existing file exactly when scheme is gguf."""
    if scheme not in SCHEMES:
        raise UserError(f"--quantize {scheme!r} is not a scheme: choose one of {list(SCHEMES)}")
    if scheme == "none" and gguf_file is None:
        return  # nothing to check: the device itself is the loader's business
    runnable = device_schemes(device)
    if scheme not in runnable:
        raise UserError(
            f"--quantize {scheme} does not run on {device}: there, choose one of {runnable}"
            + (" (nf4 and float8 need a CUDA GPU)" if torch.device(device).type != "cuda" else "")
        )
    missing = missing_package(scheme)
    if missing:
        raise UserError(f"--quantize {scheme} {missing}")
    if scheme == "gguf":
        if gguf_file is None:
            raise UserError("--quantize gguf needs --gguf FILE, the transformer's .gguf file")
        if not Path(gguf_file).expanduser().is_file():
            raise UserError(f"--gguf {gguf_file} is not a file: name the transformer's .gguf file")
    elif gguf_file is not None:
        raise UserError(f"--gguf is for --quantize gguf, not --quantize {scheme}: drop one")


def quantization_config(scheme: str, dtype: torch.dtype) -> QuantizationConfigMixin | None:
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

    A GGUF file holds either exactly the diffusers parameter names (loaded as they are) or the
    original release's layout (converted by diffusers' single-file loader)."""
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
    """Whether ``model`` has quantized Linear weights: diffusers loaded it with a quantization
    config, or torchao / bitsandbytes / GGUF tensors sit in its Linear layers."""
    if getattr(model, "is_quantized", False):
        return True
    return any(
        isinstance(module, nn.Linear) and _is_quantized_weight(module.weight)
        for module in model.modules()
    )


def _is_quantized_weight(weight: torch.Tensor) -> bool:
    package = type(weight).__module__.split(".")[0]
    return package in ("torchao", "bitsandbytes") or hasattr(weight, "quant_type")


def dense_weight(layer: nn.Linear, dtype: torch.dtype) -> torch.Tensor:
    """``layer``'s weight as a plain ``(out, in)`` tensor in ``dtype``: dequantized from torchao,
    bitsandbytes or GGUF storage, or the weight itself when it is not quantized."""
    weight = layer.weight
    if hasattr(weight, "quant_type"):  # diffusers' GGUFParameter: packed GGML blocks
        from diffusers.quantizers.gguf.utils import dequantize_gguf_tensor

        return dequantize_gguf_tensor(weight).to(dtype)
    return dequantize_module_weight(layer).detach().to(dtype)


# GGML's Q8_0: blocks of 32 values along a row, each stored as a float16 scale
# d = max|x| / 127 followed by the 32 int8 values round(x / d) (34 bytes).
Q8_0_BLOCK = 32


@torch.no_grad()
def quantize_q8_0(weight: torch.Tensor) -> torch.Tensor:
    """``(out, in)`` float weight -> ``(out, in // 32 * 34)`` uint8 Q8_0 blocks, on its device,
    byte for byte what the gguf package writes (its rounding: halves away from zero). The gguf
    package quantizes in numpy on the CPU; this runs where the weight is, so the GPU check can
    pack a full-size random base on the GPU."""
    rows, cols = weight.shape
    if cols % Q8_0_BLOCK:
        raise ValueError(f"Q8_0 needs rows of a multiple of {Q8_0_BLOCK} values, got {cols}")
    blocks = weight.detach().float().reshape(-1, Q8_0_BLOCK)
    scale = blocks.abs().amax(dim=1, keepdim=True) / 127
    inverse = torch.where(scale == 0, torch.zeros_like(scale), 1 / scale)
    scaled = blocks * inverse
    values = (scaled.sign() * (scaled.abs() + 0.5).floor()).to(torch.int8)
    packed = torch.cat([scale.half().view(torch.uint8), values.view(torch.uint8)], dim=1)
    return packed.reshape(rows, -1)


def gguf_state_dict(transformer: ModelMixin) -> dict[str, torch.Tensor]:
    """``transformer``'s state dict with every Linear weight whose rows fit Q8_0 blocks as a
    Q8_0 ``GGUFParameter`` (what diffusers reads from a GGUF file), the rest as is."""
    from diffusers.quantizers.gguf.utils import GGUFParameter
    from gguf import GGMLQuantizationType

    linear_weights = {
        f"{name}.weight"
        for name, module in transformer.named_modules()
        if isinstance(module, nn.Linear)
    }
    state = transformer.state_dict()
    for name in linear_weights:
        if state[name].shape[-1] % Q8_0_BLOCK == 0:
            packed = quantize_q8_0(state[name])
            state[name] = GGUFParameter(packed, quant_type=GGMLQuantizationType.Q8_0)
    return state


def quantize_in_memory(
    transformer: ModelMixin, scheme: str, dtype: torch.dtype, device: str | torch.device
) -> ModelMixin:
    """``transformer`` (float, e.g. randomly initialised for a benchmark) with the quantized
    layers a checkpoint loaded with ``scheme`` gets, on ``device``, without writing a checkpoint.

    torchao: its ``quantize_`` on every Linear, in place (as diffusers' loader applies it), and
    ``transformer`` itself is returned; gguf: a new model from diffusers' single-file loader on
    :func:`gguf_state_dict`; nf4: a new model, saved to a temporary folder and loaded with
    :func:`load_quantized_transformer`. Drop the float one to free its memory."""
    device = torch.device(device)
    if scheme in ("int8", "float8"):
        from torchao.quantization import quantize_

        quantize_(transformer, quantization_config(scheme, dtype).quant_type)
        return transformer.to(device)
    with tempfile.TemporaryDirectory() as folder:
        if scheme == "gguf":
            transformer.save_config(folder)
            loaded = type(transformer).from_single_file(
                gguf_state_dict(transformer),
                config=folder,
                quantization_config=quantization_config(scheme, dtype),
                torch_dtype=dtype,
                device=device,
                local_files_only=True,
            )
        else:
            transformer.save_pretrained(Path(folder) / "transformer")
            loaded = load_quantized_transformer(
                type(transformer), folder, scheme, dtype, local_files_only=True
            ).to(device)
    return loaded.eval()


@torch.no_grad()
def save_gguf(transformer: ModelMixin, path: str | Path) -> Path:
    """Write ``transformer``'s weights as a GGUF file under its diffusers parameter names: Linear
    weights in Q8_0 (:func:`gguf_state_dict`), the rest in float32. diffusers' single-file loader
    takes such a file as is (its names are the model's), so a fine-tuned base can be quantized
    without the original release's layout. Returns ``path``."""
    import gguf

    path = Path(path)
    writer = gguf.GGUFWriter(path, type(transformer).__name__)
    for name, tensor in gguf_state_dict(transformer).items():
        quant_type = getattr(tensor, "quant_type", None)
        if quant_type is None:
            writer.add_tensor(name, tensor.detach().float().cpu().numpy())
        else:
            writer.add_tensor(name, tensor.as_tensor().cpu().numpy(), raw_dtype=quant_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
