"""Students of the released configs with random weights, and random prompt conditions shaped as the
pipelines give them, for latency and memory measurements (:mod:`arcflow.evaluation.benchmark`).

Random weights cost the same time and memory as trained ones: the released architectures (LoRA
rank 256, K = 16) are built with parameters on the meta device and materialised on the GPU in
place, so 12 B / 20 B parameters never pass through host memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from arcflow.models import ArcFlowStudent, build_student_from_cfg
from arcflow.models.arch import Cond
from arcflow.released import RELEASED_MAX_SEQUENCE_LENGTH

# The released students' configs, relative to the repository (callers join them to its folder).
RELEASED_STUDENT_CONFIGS = {
    "flux": "configs/_base_/models/flux_student.py",
    "qwen_image": "configs/_base_/models/qwen_student.py",
    "flux2_klein": "configs/_base_/models/flux2_klein_student.py",
}
# The CPU benchmark's small random architectures, of the released ones' structure (registered by
# name in arcflow.registry.ARCHITECTURES when the caller imports arcflow.tinyworld).
TINY_ARCHITECTURE = "benchmark"
TINY_LORA_RANK = 8
# Prompt tokens: FluxPipeline pads T5 to max_sequence_length (512); Qwen-Image keeps the prompt's
# own length (a typical prompt after the template is dropped) and the empty negative prompt's.
# FLUX.2 [klein] pads the prompt and the negative one to the text length.
TEXT_LENGTHS = {
    "flux": (RELEASED_MAX_SEQUENCE_LENGTH, 0),
    "qwen_image": (128, 6),
    "flux2_klein": (RELEASED_MAX_SEQUENCE_LENGTH, RELEASED_MAX_SEQUENCE_LENGTH),
}
TINY_TEXT_LENGTHS = {"flux": (32, 0), "qwen_image": (16, 4), "flux2_klein": (16, 16)}
VAE_FACTOR = 8  # pixels per latent pixel of both released VAEs


def student_config(
    config: str | Path,
    tiny: bool,
    dtype: torch.dtype,
    gradient_checkpointing: bool | None = None,
) -> dict[str, Any]:
    """The student of a released config file (``configs/_base_/models/<arch>_student.py``)
    without its weights source; ``tiny`` swaps in a small architecture (and LoRA rank) of the
    same structure."""
    from mmengine.config import Config

    cfg = Config.fromfile(str(config)).model.student.to_dict()
    transformer = dict(cfg["transformer"])
    transformer.pop("from_pretrained", None)
    transformer["torch_dtype"] = str(dtype).removeprefix("torch.")
    if tiny:
        transformer["from_config"] = TINY_ARCHITECTURE
        cfg["lora_rank"] = cfg["lora_alpha"] = TINY_LORA_RANK
    cfg["transformer"] = transformer
    if gradient_checkpointing is not None:
        cfg["gradient_checkpointing"] = gradient_checkpointing
    return cfg


def build_meta_student(cfg: Mapping[str, Any]) -> ArcFlowStudent:
    """The student of ``cfg`` with every parameter on the meta device (no memory).

    Buffers and plain tensor attributes stay real (on the CPU): Qwen-Image's RoPE tables are such
    attributes, and a meta copy of them could not be materialised.
    """
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        return build_student_from_cfg(cfg, device="cpu")


def parameter_bytes(module: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


@torch.no_grad()
def materialize_module_(
    module: nn.Module, device: torch.device, seed: int = 0, std: float = 0.02
) -> nn.Module:
    """Give every meta parameter of ``module`` storage on ``device`` and a cheap random init
    (matrices N(0, std^2), norm scales 1, biases 0), in place; RuntimeError if any tensor is
    left on the meta device."""
    generator = torch.Generator(device=device).manual_seed(seed)
    made: dict[int, nn.Parameter] = {}  # shared parameters stay shared
    for owner in module.modules():
        for name, param in list(owner.named_parameters(recurse=False)):
            if not param.is_meta:
                continue
            if id(param) not in made:
                data = torch.empty(param.shape, dtype=param.dtype, device=device)
                if data.ndim >= 2:
                    data.normal_(0.0, std, generator=generator)
                else:
                    data.fill_(1.0 if name == "weight" else 0.0)
                made[id(param)] = nn.Parameter(data, requires_grad=param.requires_grad)
            setattr(owner, name, made[id(param)])
    module.to(device)
    leftover = [
        name for name, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta
    ]
    if leftover:
        raise RuntimeError(f"tensors left on the meta device: {leftover[:5]}")
    return module


@torch.no_grad()
def materialize_(
    student: ArcFlowStudent, device: torch.device, seed: int = 0, std: float = 0.02
) -> ArcFlowStudent:
    """Give every meta parameter storage on ``device`` and a cheap random init, in place.

    Matrices get N(0, std^2), norm scales 1, biases 0. Then the student is put back at its
    documented initialisation (heads from the teacher projection, the final modulation copied,
    LoRA B = 0), so that it starts as the teacher, as a real student does.
    """
    materialize_module_(student, device, seed, std)
    student.head.reset_parameters()
    forked = student.transformer.norm_out.linear
    forked.student.load_state_dict(forked.teacher.state_dict())
    for layer in student.lora_layers().values():
        for lora_b in layer.lora_B.values():
            lora_b.weight.zero_()
    return student


def build_random_student(
    cfg: Mapping[str, Any], device: torch.device, seed: int = 0
) -> ArcFlowStudent:
    """``build_meta_student`` then ``materialize_``; in eval mode (no LoRA dropout)."""
    return materialize_(build_meta_student(cfg), device, seed).eval()


def random_cond(
    student: ArcFlowStudent,
    batch: int,
    text_lengths: tuple[int, int],
    device: torch.device,
    seed: int = 0,
) -> Cond:
    """Random prompt embeddings shaped as the pipelines give them (see ``arcflow.models.arch``).

    ``text_lengths`` = (prompt tokens, negative-prompt tokens); the latter only for a base whose
    teacher runs true CFG (Qwen-Image).
    """
    config = student.transformer.config
    dtype = student.arch.input_dtype(student.transformer)
    gen = torch.Generator().manual_seed(seed)

    def embeds(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=gen).to(device=device, dtype=dtype)

    def mask(tokens: int) -> torch.Tensor:
        return torch.ones(batch, tokens, dtype=torch.long, device=device)

    return student.arch.random_cond(config, batch, text_lengths, embeds, mask)


def teacher_forwards_per_step(student: ArcFlowStudent) -> int:
    """2 for a true-CFG teacher (Qwen-Image), 1 for an embedded-guidance one (FLUX)."""
    guided = student.arch.true_cfg and student.guidance_scale not in (None, 1.0)
    return 2 if guided else 1
