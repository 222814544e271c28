"""The settings of the released ArcFlow models (docs/method.md): the one place the code takes its
released defaults from. A module without project imports, so every layer, ``arcflow.flow``
included, may read it."""

from __future__ import annotations

import math

# The sampler: static shift 3.2 (FLUX.1-dev's and Qwen-Image's schedulers, without their
# resolution-dependent shift) and two student steps of equal raw length.
RELEASED_SHIFT = 3.2
RELEASED_NFE = 2

# The student: K momentum components, LoRA rank and alpha, and the initial log momentum rates
# r_k = ln(gamma_k), evenly spaced over [ln 0.2, ln 4.0].
RELEASED_NUM_COMPONENTS = 16
RELEASED_LORA_RANK = 256
RELEASED_LORA_ALPHA = 256
RELEASED_LOG_GAMMA_RANGE = (math.log(0.2), math.log(4.0))

# The text encoders' token budget (T5 for FLUX, Qwen2.5-VL for Qwen-Image).
RELEASED_MAX_SEQUENCE_LENGTH = 512

# The teachers' guidance: FLUX.1-dev's embedded guidance (the student gets it too); Qwen-Image's
# true CFG (in the teacher only).
RELEASED_GUIDANCE = {"flux": 3.5, "qwen_image": 4.0}
