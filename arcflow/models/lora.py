"""LoRA targets of the released ArcFlow students (method.md section 4.3) and the peft config.

Targets are resolved to explicit module paths of the given transformer (full-path regexes, then
the list of matches), never to bare suffixes: ``proj_out`` as a suffix would also hit the top-level
output projection, and no attention projection may be adapted.
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

_QWEN_TXT_MLP = re.compile(r"transformer_blocks\.(\d+)\.txt_mlp\..*")


def released_lora_targets(arch: str, transformer: nn.Module) -> list[str]:
    """Module paths the released students adapt, for this transformer's depth.

    Qwen-Image: the text stream of the last block feeds nothing (only the image stream reaches
    ``norm_out``), so its ``txt_mlp`` would get no gradient and is left out.
    """
    if arch not in RELEASED_LORA_PATTERNS:
        raise ValueError(f"unknown architecture {arch!r}; known: {sorted(RELEASED_LORA_PATTERNS)}")
    patterns = [re.compile(p) for p in RELEASED_LORA_PATTERNS[arch]]
    last_block = len(transformer.transformer_blocks) - 1
    targets = []
    for name, module in transformer.named_modules():
        if not isinstance(module, nn.Linear) or not any(p.fullmatch(name) for p in patterns):
            continue
        txt = _QWEN_TXT_MLP.fullmatch(name)
        if arch == "qwen_image" and txt and int(txt.group(1)) == last_block:
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
