"""Per-architecture adapters: what differs between FLUX.1-dev and Qwen-Image around one forward.

An adapter knows the diffusers class, how to feed it (packing, conditioning, position inputs),
how the teacher is guided, the released LoRA targets and the published format's class name and
config keys. Everything else (heads, LoRA, the teacher/student switch) is shared.

Conditioning dictionaries (tensors batched like the latents):

- FLUX: ``prompt_embeds`` (B, L, joint_dim), ``pooled_prompt_embeds`` (B, pooled_dim).
- Qwen-Image: ``prompt_embeds`` (B, L, D), optional ``prompt_embeds_mask`` (B, L) (1 = token);
  for the teacher's true CFG also ``negative_prompt_embeds`` (B or 1, L', D) and optional
  ``negative_prompt_embeds_mask`` (B or 1, L'); a batch of 1 is shared by all samples.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from diffusers import FluxTransformer2DModel, ModelMixin, QwenImageTransformer2DModel
from torch import nn

from arcflow.models.lora import released_lora_targets
from arcflow.models.packing import PACK, flux_image_ids, pack_latents, unpack_tokens
from arcflow.released import RELEASED_GUIDANCE

Cond = dict[str, torch.Tensor]


def _require(cond: Cond, key: str, arch: str, shape: str) -> torch.Tensor:
    if key not in cond or cond[key] is None:
        raise KeyError(f"{arch} conditioning needs cond[{key!r}] {shape}; got keys {sorted(cond)}")
    return cond[key]


def is_float8(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` is stored in a one-byte float (float8 layerwise-casting storage)."""
    return tensor.dtype.is_floating_point and tensor.dtype.itemsize == 1


class ArchAdapter(ABC):
    """What one base architecture needs around its unchanged diffusers forward."""

    name: ClassVar[str]
    transformer_cls: ClassVar[type[ModelMixin]]
    published_class_name: ClassVar[str]
    input_embedder: ClassVar[str]  # the first Linear of the network, never a LoRA target
    # Base constructor arguments the published config.json repeats (besides in/out_channels).
    published_arch_keys: ClassVar[tuple[str, ...]]
    full_config: ClassVar[dict[str, Any]]
    # The stacks ``growth.deepen_transformer`` can grow, the default (an integer ``deepen``) first:
    # module list -> (config key counting its blocks, output projections of one block: zeroed,
    # they make a block the identity on the residual stream).
    growable_stacks: ClassVar[dict[str, tuple[str, tuple[str, ...]]]]

    # ------------------------------------------------------------------ structure
    def check_transformer(self, transformer: nn.Module) -> None:
        if not isinstance(transformer, self.transformer_cls):
            raise TypeError(
                f"arch {self.name!r} expects a {self.transformer_cls.__name__}, got "
                f"{type(transformer).__name__}"
            )

    def token_features(self, transformer: ModelMixin) -> int:
        """Output features per token of the teacher's ``proj_out``: ``C * 2 * 2``."""
        config = transformer.config
        return config.patch_size**2 * (config.out_channels or config.in_channels)

    def latent_channels(self, transformer: ModelMixin) -> int:
        """C, the channels of the unpacked latent."""
        return self.token_features(transformer) // (PACK * PACK)

    def input_dtype(self, transformer: ModelMixin) -> torch.dtype:
        """dtype the base network computes in: that of its input embedding, or with float8
        storage (diffusers' ``enable_layerwise_casting``) or GGUF / bitsandbytes packed integer
        weights the compute dtype, which is what the model's ``dtype`` reports then (torchao's
        quantized weights report their compute dtype themselves)."""
        weight = getattr(transformer, self.input_embedder).weight
        packed = is_float8(weight) or not weight.dtype.is_floating_point
        return transformer.dtype if packed else weight.dtype

    def lora_targets(self, transformer: nn.Module, attention: bool = False) -> list[str]:
        return released_lora_targets(self.name, transformer, attention)

    @abstractmethod
    def default_guidance_scale(self, transformer: ModelMixin) -> float | None:
        """The released teacher guidance for this base (None: the base takes no guidance)."""

    # ------------------------------------------------------------------ prompts
    @abstractmethod
    def prompt_token_counts(self, pipe: Any, prompts: list[str]) -> list[int]:
        """Tokens of each prompt in the long text encoder before truncation; ``pipe`` is any
        pipeline of this base holding its tokenizers."""

    def prompt_token_limit(self, pipe: Any, max_sequence_length: int) -> int:
        """Tokens of a prompt the long text encoder reads; the rest is cut off."""
        return max_sequence_length

    # ------------------------------------------------------------------ forwards
    @abstractmethod
    def student_tokens(
        self,
        transformer: ModelMixin,
        x: torch.Tensor,
        sigma: torch.Tensor,
        cond: Cond,
        guidance_scale: float | None,
    ) -> torch.Tensor:
        """One forward of the student, ``(B, N, F)`` tokens of whatever ``proj_out`` emits."""

    @abstractmethod
    def teacher_velocity(
        self,
        transformer: ModelMixin,
        x: torch.Tensor,
        sigma: torch.Tensor,
        cond: Cond,
        guidance_scale: float | None,
    ) -> torch.Tensor:
        """The guided teacher velocity ``(B, C, H, W)`` in float32 (proj_out in teacher mode)."""

    # ------------------------------------------------------------------ published format
    def published_config(self, transformer: ModelMixin) -> dict[str, Any]:
        """Base constructor arguments as the published ``Arc*Transformer2DModel`` takes them.

        ``out_channels`` there counts the per-token outputs (``C*p*p``), as those classes define it.
        """
        config = transformer.config
        keys = {key: config[key] for key in self.published_arch_keys}
        keys["axes_dims_rope"] = list(keys["axes_dims_rope"])
        return {
            "in_channels": config.in_channels,
            "out_channels": self.token_features(transformer),
            **keys,
        }

    def check_published_config(self, published: dict[str, Any], transformer: ModelMixin) -> None:
        """Raise if an adapter config describes another base than ``transformer``."""
        ours = self.published_config(transformer)
        for key, value in ours.items():
            if key not in published:
                continue
            theirs = published[key]
            if key == "out_channels" and theirs is None:
                theirs = published.get("in_channels", ours["in_channels"])
            if isinstance(theirs, (list, tuple)):
                theirs = list(theirs)
            if theirs != value:
                raise ValueError(
                    f"adapter config.json has {key}={published[key]!r} but the base "
                    f"{type(transformer).__name__} has {value!r}: the adapter was trained on "
                    "another base model"
                )


def _as_velocity(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``(B, N, C*4)`` tokens -> ``(B, C, H, W)`` in float32."""
    return unpack_tokens(tokens.float().unsqueeze(2), height, width).squeeze(1)


class FluxAdapter(ArchAdapter):
    """FLUX.1-dev: guidance-distilled; the guidance scale is an input of teacher and student."""

    name = "flux"
    transformer_cls = FluxTransformer2DModel
    published_class_name = "ArcFluxTransformer2DModel"
    input_embedder = "x_embedder"
    growable_stacks = {
        "single_transformer_blocks": ("num_single_layers", ("proj_out",)),
        "transformer_blocks": (
            "num_layers",
            ("attn.to_out.0", "attn.to_add_out", "ff.net.2", "ff_context.net.2"),
        ),
    }
    published_arch_keys = (
        "num_layers",
        "num_single_layers",
        "attention_head_dim",
        "num_attention_heads",
        "joint_attention_dim",
        "pooled_projection_dim",
        "guidance_embeds",
        "axes_dims_rope",
    )
    full_config = {
        "patch_size": 1,
        "in_channels": 64,
        "num_layers": 19,
        "num_single_layers": 38,
        "attention_head_dim": 128,
        "num_attention_heads": 24,
        "joint_attention_dim": 4096,
        "pooled_projection_dim": 768,
        "guidance_embeds": True,
        "axes_dims_rope": (16, 56, 56),
    }

    def default_guidance_scale(self, transformer: ModelMixin) -> float | None:
        return RELEASED_GUIDANCE[self.name] if transformer.config.guidance_embeds else None

    def prompt_token_counts(self, pipe: Any, prompts: list[str]) -> list[int]:
        # T5's ids, end-of-sequence token included (the CLIP prompt is always cut at 77).
        ids = pipe.tokenizer_2(prompts, padding=False, truncation=False).input_ids
        return [len(i) for i in ids]

    def _forward(
        self,
        transformer: ModelMixin,
        x: torch.Tensor,
        sigma: torch.Tensor,
        cond: Cond,
        guidance_scale: float | torch.Tensor | None,
    ) -> torch.Tensor:
        dtype = self.input_dtype(transformer)
        prompt = _require(cond, "prompt_embeds", "FLUX", "(B, L, joint_attention_dim)")
        pooled = _require(cond, "pooled_prompt_embeds", "FLUX", "(B, pooled_projection_dim)")
        height, width = x.shape[-2:]
        if transformer.config.guidance_embeds:
            if guidance_scale is None:
                raise ValueError("this FLUX base is guidance-distilled: it needs a guidance scale")
            # A scalar, or one scale per sample (B,) as guidance distillation draws them.
            guidance = torch.as_tensor(guidance_scale, dtype=torch.float32, device=sigma.device)
            guidance = guidance.expand(sigma.shape)
        elif guidance_scale is not None:
            raise ValueError(
                f"guidance_scale={guidance_scale} given but this FLUX base has no guidance "
                "embedding (guidance_embeds=False); pass guidance_scale=None"
            )
        else:
            guidance = None
        return transformer(
            hidden_states=pack_latents(x.to(dtype)),
            encoder_hidden_states=prompt.to(dtype),
            pooled_projections=pooled.to(dtype),
            timestep=sigma,
            img_ids=flux_image_ids(height, width, x.device),
            txt_ids=torch.zeros(prompt.shape[1], 3, device=x.device),
            guidance=guidance,
            return_dict=False,
        )[0]

    def student_tokens(self, transformer, x, sigma, cond, guidance_scale):
        return self._forward(transformer, x, sigma, cond, guidance_scale)

    def teacher_velocity(self, transformer, x, sigma, cond, guidance_scale):
        tokens = self._forward(transformer, x, sigma, cond, guidance_scale)
        return _as_velocity(tokens, *x.shape[-2:])


class QwenImageAdapter(ArchAdapter):
    """Qwen-Image: the teacher uses true CFG ``u_neg + s (u_pos - u_neg)``; the student runs once,
    on the positive prompt only."""

    name = "qwen_image"
    transformer_cls = QwenImageTransformer2DModel
    published_class_name = "ArcQwenImageTransformer2DModel"
    input_embedder = "img_in"
    growable_stacks = {
        "transformer_blocks": (
            "num_layers",
            ("attn.to_out.0", "attn.to_add_out", "img_mlp.net.2", "txt_mlp.net.2"),
        ),
    }
    published_arch_keys = (
        "num_layers",
        "attention_head_dim",
        "num_attention_heads",
        "joint_attention_dim",
        "axes_dims_rope",
    )
    full_config = {
        "patch_size": 2,
        "in_channels": 64,
        "out_channels": 16,
        "num_layers": 60,
        "attention_head_dim": 128,
        "num_attention_heads": 24,
        "joint_attention_dim": 3584,
        "axes_dims_rope": (16, 56, 56),
    }

    def check_transformer(self, transformer: nn.Module) -> None:
        super().check_transformer(transformer)
        if transformer.config.patch_size != PACK:
            raise ValueError(
                f"Qwen-Image tokens are 2x2 latent patches; got patch_size="
                f"{transformer.config.patch_size}"
            )

    def default_guidance_scale(self, transformer: ModelMixin) -> float | None:
        return RELEASED_GUIDANCE[self.name]

    def prompt_token_counts(self, pipe: Any, prompts: list[str]) -> list[int]:
        # The templated prompt, less the template's prefix that the pipeline drops.
        texts = [pipe.prompt_template_encode.format(p) for p in prompts]
        ids = pipe.tokenizer(texts, padding=False, truncation=False).input_ids
        return [len(i) - pipe.prompt_template_encode_start_idx for i in ids]

    def prompt_token_limit(self, pipe: Any, max_sequence_length: int) -> int:
        return min(max_sequence_length, pipe.tokenizer_max_length)

    def _forward(
        self,
        transformer: ModelMixin,
        x: torch.Tensor,
        sigma: torch.Tensor,
        prompt: torch.Tensor,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        dtype = self.input_dtype(transformer)
        batch, _, height, width = x.shape
        # The pipeline's RoPE layout: one image of (frames=1, H/2, W/2) patches per sample.
        img_shapes = [[(1, height // PACK, width // PACK)]] * batch
        return transformer(
            hidden_states=pack_latents(x.to(dtype)),
            encoder_hidden_states=prompt.to(dtype),
            encoder_hidden_states_mask=mask,
            timestep=sigma,
            img_shapes=img_shapes,
            return_dict=False,
        )[0]

    def student_tokens(self, transformer, x, sigma, cond, guidance_scale):
        prompt = _require(cond, "prompt_embeds", "Qwen-Image", "(B, L, joint_attention_dim)")
        return self._forward(transformer, x, sigma, prompt, cond.get("prompt_embeds_mask"))

    def teacher_velocity(self, transformer, x, sigma, cond, guidance_scale):
        prompt = _require(cond, "prompt_embeds", "Qwen-Image", "(B, L, joint_attention_dim)")
        mask = cond.get("prompt_embeds_mask")
        height, width = x.shape[-2:]
        if guidance_scale is None or guidance_scale == 1.0:
            return _as_velocity(self._forward(transformer, x, sigma, prompt, mask), height, width)
        if cond.get("negative_prompt_embeds") is None:
            raise ValueError(
                f"the Qwen-Image teacher uses true CFG (guidance_scale={guidance_scale}): cond "
                "needs 'negative_prompt_embeds' (B, L', D) and 'negative_prompt_embeds_mask' "
                "(B, L') (the embedding of the empty negative prompt); got keys "
                f"{sorted(cond)}"
            )
        negative = cond["negative_prompt_embeds"]
        negative_mask = cond.get("negative_prompt_embeds_mask")
        if negative.shape[0] == 1 < prompt.shape[0]:
            # One negative prompt (the empty one) shared by the batch.
            negative = negative.expand(prompt.shape[0], -1, -1)
            if negative_mask is not None:
                negative_mask = negative_mask.expand(prompt.shape[0], -1)
        if negative.shape == prompt.shape:
            # Same text length: one forward on the doubled batch.
            if mask is not None or negative_mask is not None:
                ones = torch.ones(prompt.shape[:2], dtype=torch.bool, device=prompt.device)
                mask = torch.cat(
                    [
                        ones if mask is None else mask.bool(),
                        ones if negative_mask is None else negative_mask.bool(),
                    ]
                )
            tokens = self._forward(
                transformer,
                x.repeat(2, 1, 1, 1),
                sigma.repeat(2),
                torch.cat([prompt, negative]),
                mask,
            )
            u_pos, u_neg = _as_velocity(tokens, height, width).chunk(2)
        else:
            u_pos = _as_velocity(self._forward(transformer, x, sigma, prompt, mask), height, width)
            u_neg = _as_velocity(
                self._forward(transformer, x, sigma, negative, negative_mask), height, width
            )
        return u_neg + guidance_scale * (u_pos - u_neg)


ARCHS: dict[str, ArchAdapter] = {
    adapter.name: adapter for adapter in (FluxAdapter(), QwenImageAdapter())
}


def get_arch(arch: str | ArchAdapter) -> ArchAdapter:
    """The adapter for ``"flux"`` or ``"qwen_image"`` (an adapter object passes through)."""
    if isinstance(arch, ArchAdapter):
        return arch
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; known: {sorted(ARCHS)}")
    return ARCHS[arch]


def arch_for_published_class(class_name: str) -> ArchAdapter:
    """The adapter whose published ``_class_name`` is ``class_name``."""
    for adapter in ARCHS.values():
        if adapter.published_class_name == class_name:
            return adapter
    known = sorted(a.published_class_name for a in ARCHS.values())
    raise ValueError(f"unknown ArcFlow adapter class {class_name!r}; known: {known}")
