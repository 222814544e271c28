"""LoRA targets of the released ArcFlow students and the peft config (docs/method.md, The student:
LoRA).

Targets are resolved to explicit module paths of the given transformer (each base module's
full-path regexes, then the list of matches), never to bare suffixes: ``proj_out`` as a suffix
would also hit the top-level output projection. The released students adapt no attention
projection; ``attention=True`` adds them (an option of this project, for students whose teacher's
guidance changes what the image tokens attend to; the published adapter format stores any target
list).
"""

from __future__ import annotations

from peft import LoraConfig
from torch import nn


def released_lora_targets(arch: str, transformer: nn.Module, attention: bool = False) -> list[str]:
    """Module paths the released students of base ``arch`` adapt, for this transformer's depth
    (its :attr:`~arcflow.models.arch.ArchAdapter.lora_patterns`); ``attention`` adds the
    attention projections."""
    from arcflow.models.arch import get_arch  # the adapters' module imports none of this one

    return get_arch(arch).lora_targets(transformer, attention)


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
