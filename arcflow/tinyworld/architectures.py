"""The tiny world's architectures and sampling constants, each defined here once.

Images are 64x64 (``scenes.IMAGE_SIZE``); the VAEs downsample by 4 to 16x16x16 latents (16
channels, as FLUX.1-dev and Qwen-Image have), which 2x2 packing turns into 8x8 = 64 tokens of 64
features.

Named transformer sizes, for configs to write ``transformer=dict(from_config="tiny")`` (looked
up in ``arcflow.registry.ARCHITECTURES``, which imports this module on first use):

- ``"tiny"``: the tiny teachers as their first stage builds them (FLUX's later stages grow its
  single-stream stack to 4 blocks with ``transformer.deepen``);
- ``"toy"``: the seconds-long architectures of the tests and the CI distillation (1 + 1 FLUX
  blocks, 4 latent channels);
- ``"benchmark"``: the CPU latency benchmark's (``tools/benchmark.py --tiny``), between the two.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from arcflow.registry import ARCHITECTURES
from arcflow.tinyworld.scenes import IMAGE_SIZE

LATENT_CHANNELS = 16
VAE_SCALE_FACTOR = 4  # pixels per latent pixel of both tiny VAEs
# FluxPipeline pads T5 to max_sequence_length without an attention mask, so the teacher only knows
# the padding length it was trained with: every FLUX caller passes this (captions are <= 24 words).
FLUX_MAX_SEQUENCE_LENGTH = 32
# The tiny FLUX teacher's embedded guidance. Its guidance distillation covers CFG scales 1-10;
# FLUX.1-dev's 3.5 under-guides this small model.
FLUX_GUIDANCE_SCALE = 7.0
# What a tiny stack folder writes as its pipelines' defaults (pipelines.loading reads it).
SAMPLING_DEFAULTS: dict[str, dict[str, Any]] = {
    "flux": dict(
        height=IMAGE_SIZE,
        width=IMAGE_SIZE,
        max_sequence_length=FLUX_MAX_SEQUENCE_LENGTH,
        guidance_scale=FLUX_GUIDANCE_SCALE,
    ),
    "qwen_image": dict(height=IMAGE_SIZE, width=IMAGE_SIZE),
}

# --------------------------------------------------------------------------- VAEs and text
FLUX_VAE: dict[str, Any] = dict(
    down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3,
    block_out_channels=(16, 32, 64),
    layers_per_block=1,
    latent_channels=LATENT_CHANNELS,
    norm_num_groups=8,
    sample_size=IMAGE_SIZE,
    use_quant_conv=False,
    use_post_quant_conv=False,
    mid_block_add_attention=False,  # 256-token attention costs more than it helps at this size
    scaling_factor=1.0,  # replaced by the measured latent statistics at export
    shift_factor=0.0,
)
QWEN_VAE: dict[str, Any] = dict(
    base_dim=24,
    z_dim=LATENT_CHANNELS,
    dim_mult=[1, 2, 2],
    num_res_blocks=1,
    temperal_downsample=[False, True],
    latents_mean=[0.0] * LATENT_CHANNELS,  # replaced by the measured statistics at export
    latents_std=[1.0] * LATENT_CHANNELS,
)
FLUX_TEXT_DIM = 64  # T5 d_model = joint_attention_dim
FLUX_POOLED_DIM = 32  # CLIP hidden size = pooled_projection_dim
QWEN_TEXT_DIM = 64

# --------------------------------------------------------------------------- transformers
TRANSFORMERS: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": {
        "flux": dict(
            patch_size=1,
            in_channels=4 * LATENT_CHANNELS,
            num_layers=2,
            num_single_layers=2,
            attention_head_dim=32,
            num_attention_heads=6,
            joint_attention_dim=FLUX_TEXT_DIM,
            pooled_projection_dim=FLUX_POOLED_DIM,
            guidance_embeds=True,  # FLUX.1-dev is guidance-distilled; so is the tiny teacher
            axes_dims_rope=(8, 12, 12),
        ),
        "qwen_image": dict(
            patch_size=2,
            in_channels=4 * LATENT_CHANNELS,
            out_channels=LATENT_CHANNELS,
            num_layers=4,
            attention_head_dim=32,
            num_attention_heads=6,
            joint_attention_dim=QWEN_TEXT_DIM,
            axes_dims_rope=(8, 12, 12),
        ),
    },
    "toy": {
        # guidance_embeds=True: the embedded-guidance path of FLUX.1-dev is exercised.
        "flux": dict(
            patch_size=1,
            in_channels=16,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=32,
            pooled_projection_dim=32,
            guidance_embeds=True,
            axes_dims_rope=(4, 4, 8),
        ),
        "qwen_image": dict(
            patch_size=2,
            in_channels=16,
            out_channels=4,
            num_layers=2,
            attention_head_dim=16,
            num_attention_heads=3,
            joint_attention_dim=16,
            axes_dims_rope=(8, 4, 4),
        ),
        # FLUX.2 [klein]: 4-axis positions, no guidance embedding (true CFG), no biases.
        "flux2_klein": dict(
            patch_size=1,
            in_channels=16,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=24,
            timestep_guidance_channels=32,
            mlp_ratio=2.0,
            axes_dims_rope=(4, 4, 4, 4),
            guidance_embeds=False,
        ),
    },
    "benchmark": {
        "flux": dict(
            patch_size=1,
            in_channels=16,
            num_layers=2,
            num_single_layers=2,
            attention_head_dim=32,
            num_attention_heads=3,
            joint_attention_dim=64,
            pooled_projection_dim=32,
            guidance_embeds=True,
            axes_dims_rope=(8, 12, 12),
        ),
        "qwen_image": dict(
            patch_size=2,
            in_channels=16,
            out_channels=4,
            num_layers=4,
            attention_head_dim=32,
            num_attention_heads=3,
            joint_attention_dim=64,
            axes_dims_rope=(8, 12, 12),
        ),
        "flux2_klein": dict(
            patch_size=1,
            in_channels=16,
            num_layers=2,
            num_single_layers=2,
            attention_head_dim=32,
            num_attention_heads=3,
            joint_attention_dim=64,
            timestep_guidance_channels=32,
            mlp_ratio=3.0,
            axes_dims_rope=(8, 8, 8, 8),
            guidance_embeds=False,
        ),
    },
}


def transformer_config(arch: str, name: str = "tiny") -> dict[str, Any]:
    """Constructor arguments of the named size of ``arch`` (``"flux"`` / ``"qwen_image"``)."""
    sizes = TRANSFORMERS[name]
    if arch not in sizes:
        raise ValueError(f"the {name!r} architecture exists for {sorted(sizes)}, not {arch!r}")
    return dict(sizes[arch])


def _named(name: str) -> Callable[[str], dict[str, Any]]:
    def config(arch: str) -> dict[str, Any]:
        return transformer_config(arch, name)

    return config


for _name in TRANSFORMERS:
    ARCHITECTURES.register_module(name=_name, module=_named(_name))
