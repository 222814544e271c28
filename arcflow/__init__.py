"""ArcFlow: few-step text-to-image generation by non-linear flow distillation."""

import logging

__version__ = "0.1.0"

# torchao (for --quantize int8 / float8) is imported by peft and transformers whenever it is
# installed. On a CPU build of torch it logs the CUDA kernel libraries it cannot load there, torch
# logs deprecation notes about the enum types it registers, and diffusers that torchao's older
# tensor classes are gone (they matter only to checkpoints saved by torchao, which nothing here
# loads). None of it concerns what runs; set before those imports so a command's stderr holds
# only its own messages. Errors still show.
for _name in ("torchao", "torch.utils._pytree", "diffusers.quantizers.torchao.torchao_quantizer"):
    logging.getLogger(_name).setLevel(logging.ERROR)
