"""LoRA targets of the released ArcFlow students and the peft config (docs/method.md, The student:
LoRA).

Targets are resolved to explicit module paths of the given transformer (full-path regexes, then
the list of matches), never to bare suffixes: ``proj_out`` as a suffix would also hit the top-level
output projection. The released students adapt no attention projection; ``attention=True`` adds
them (an option of this project, for students whose teacher's guidance changes what the image
tokens attend to; the published adapter format stores any target list).
"""

from __future__ import annotations

import re

from peft import LoraConfig
from torch import nn

# Full-path patterns per architecture; ``re.fullmatch`` anchors them at the model root, so
# ``transformer_blocks`` never matches ``single_transformer_blocks``.
RELEASED_LORA_PATTERNS: dict[str, tuple[str, ...]] = {
    "flux": (
        r"transformer_blocks\.\d+\.ff\.net\.(0\.proj|2)",
        r"transformer_blocks\.\d+\.ff_context\.net\.(0\.proj|2)",
        r"single_transformer_blocks\.\d+\.(proj_mlp|proj_out)",
        r"time_text_embed\.timestep_embedder\.linear_[12]",
    ),
    "qwen_image": (
        r"transformer_blocks\.\d+\.img_mlp\.net\.(0\.proj|2)",
        r"transformer_blocks\.\d+\.txt_mlp\.net\.(0\.proj|2)",
        r"time_text_embed\.timestep_embedder\.linear_[12]",
    ),
}

# The attention projections: image-stream q/k/v/out and text-stream (add_*) q/k/v/out of the
# dual-stream blocks; FLUX's single-stream blocks share q/k/v (their output is proj_out, above).
_DUAL_STREAM_ATTENTION = (
    r"transformer_blocks\.\d+\.attn\.(to_[qkv]|to_out\.0|add_[qkv]_proj|to_add_out)"
)
ATTENTION_LORA_PATTERNS: dict[str, tuple[str, ...]] = {
    "flux": (_DUAL_STREAM_ATTENTION, r"single_transformer_blocks\.\d+\.attn\.to_[qkv]"),
    "qwen_image": (_DUAL_STREAM_ATTENTION,),
}

# Qwen-Image's last block: only its image stream reaches norm_out, so what computes text-token
# outputs there (text queries, text output projection, text MLP) feeds nothing.
_QWEN_TEXT_ONLY = re.compile(
    r"transformer_blocks\.(\d+)\.(txt_mlp\..*|attn\.(add_q_proj|to_add_out))"
)


def released_lora_targets(arch: str, transformer: nn.Module, attention: bool = False) -> list[str]:
    """Module paths the released students adapt, for this transformer's depth; ``attention``
    adds the attention projections.

    Qwen-Image: the text stream of the last block feeds nothing, so its modules that only compute
    text-token outputs would get no gradient and are left out.
    """
    if arch not in RELEASED_LORA_PATTERNS:
        raise ValueError(f"unknown architecture {arch!r}; known: {sorted(RELEASED_LORA_PATTERNS)}")
    sources = RELEASED_LORA_PATTERNS[arch] + (ATTENTION_LORA_PATTERNS[arch] if attention else ())
    patterns = [re.compile(p) for p in sources]
    last_block = len(transformer.transformer_blocks) - 1
    targets = []
    for name, module in transformer.named_modules():
        if not isinstance(module, nn.Linear) or not any(p.fullmatch(name) for p in patterns):
            continue
        text_only = _QWEN_TEXT_ONLY.fullmatch(name)
        if arch == "qwen_image" and text_only and int(text_only.group(1)) == last_block:
            continue
        targets.append(name)
    return targets


def make_lora_config(
    rank: int,
    alpha: float,
    dropout: float,
    init: str | bool,
    targets: list[str] | str,
) -> LoraConfig:
    """peft config: explicit module paths (or a user regex) and the gaussian init (B = 0)."""
    return LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        init_lora_weights=init,
        target_modules=targets,
    )
