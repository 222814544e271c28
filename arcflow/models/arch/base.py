"""The contract of a base architecture: what differs between bases around one unchanged forward.

An adapter (one module of this package per base) knows the diffusers class, how to feed it
(packing, conditioning, position inputs), how the teacher is guided, how prompts are encoded (the
stock pipeline's ``encode_prompt``), the released LoRA targets and the published format's class
name and config keys. Everything else (heads, LoRA, the teacher/student switch, the sampling loop)
is shared. Adding a base: docs/bases.md.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from diffusers import ModelMixin
from torch import nn

from arcflow.models.packing import PACK, unpack_tokens

Cond = dict[str, torch.Tensor]


def require(cond: Cond, key: str, arch: str, shape: str) -> torch.Tensor:
    if key not in cond or cond[key] is None:
        raise KeyError(f"{arch} conditioning needs cond[{key!r}] {shape}; got keys {sorted(cond)}")
    return cond[key]


def is_float8(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` is stored in a one-byte float (float8 layerwise-casting storage)."""
    return tensor.dtype.is_floating_point and tensor.dtype.itemsize == 1


class ArchAdapter(ABC):
    """What one base architecture needs around its unchanged diffusers forward."""

    name: ClassVar[str]
    # The base whose transformer sizes this one shares (an edit model of the same class): the
    # named sizes of arcflow.registry.ARCHITECTURES are looked up under it.
    family: ClassVar[str | None] = None
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

    vae: ClassVar[str]  # the diffusers name of the base's VAE class (``vae/`` of its folder)
    # The stock pipeline whose ``encode_prompt`` (and LoRA loader) this base uses, by its diffusers
    # name: importing a pipeline class imports transformers' image processors, which a training
    # run that never builds the pipeline should not pay for (nor print their warnings).
    text_pipeline: ClassVar[str]
    # The teacher is guided by a negative prompt (true CFG: 2 forwards a step) rather than by an
    # embedded guidance input.
    true_cfg: ClassVar[bool] = False
    # Released LoRA targets as full-path regexes (``re.fullmatch`` from the model root, so
    # ``transformer_blocks`` never matches ``single_transformer_blocks``), and the attention
    # projections an ``attention=True`` student adds.
    lora_patterns: ClassVar[tuple[str, ...]]
    attention_lora_patterns: ClassVar[tuple[str, ...]]

    @property
    def vae_cls(self) -> type[ModelMixin]:
        """The diffusers VAE class named by :attr:`vae`, imported on first use (diffusers'
        autoencoders module pulls in pipeline code)."""
        import diffusers

        return getattr(diffusers, self.vae)

    @property
    def text_pipeline_cls(self) -> type:
        """The diffusers pipeline class named by :attr:`text_pipeline`, imported on first use."""
        import diffusers

        return getattr(diffusers, self.text_pipeline)

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
        """Module paths the released students adapt, for this transformer's depth; ``attention``
        adds the attention projections. Explicit paths, never bare suffixes: ``proj_out`` as a
        suffix would also hit the top-level output projection."""
        sources = self.lora_patterns + (self.attention_lora_patterns if attention else ())
        patterns = [re.compile(p) for p in sources]
        return [
            name
            for name, module in transformer.named_modules()
            if isinstance(module, nn.Linear)
            and any(p.fullmatch(name) for p in patterns)
            and not self.feeds_nothing(name, transformer)
        ]

    def feeds_nothing(self, name: str, transformer: nn.Module) -> bool:
        """Whether module ``name`` computes only outputs the network never uses (no gradient
        reaches it, so a LoRA there would only cost memory)."""
        return False

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

    @abstractmethod
    def encode_prompts(
        self,
        pipe: Any,
        prompts: list[str],
        device: torch.device,
        max_sequence_length: int,
        negative_prompt: str,
    ) -> Cond:
        """The conditioning dict of ``prompts`` through ``pipe`` (a :attr:`text_pipeline_cls`
        holding the text encoders); a true-CFG base adds ``negative_prompt``'s embedding."""

    @abstractmethod
    def random_cond(
        self,
        config: Any,
        batch: int,
        lengths: tuple[int, int],
        embeds: Callable[..., torch.Tensor],
        mask: Callable[[int], torch.Tensor],
    ) -> Cond:
        """A conditioning dict of random embeddings shaped as :meth:`encode_prompts` gives it
        (speed and memory checks without text encoders): ``lengths`` = (prompt tokens,
        negative-prompt tokens), ``embeds(*shape)`` a random tensor, ``mask(tokens)`` all ones."""

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

    # ------------------------------------------------------------------ true CFG
    display_name: ClassVar[str]  # in messages: "Qwen-Image"

    def _source(self, cond: Cond) -> torch.Tensor | None:
        """The latent of a condition image whose tokens join the sequence (an edit model's
        source image), or None."""
        return None

    def _forward(
        self,
        transformer: ModelMixin,
        x: torch.Tensor,
        sigma: torch.Tensor,
        prompt: torch.Tensor,
        mask: torch.Tensor | None,
        source: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One forward on ``prompt`` embeddings (and a condition image): the noisy tokens."""
        raise NotImplementedError(f"{type(self).__name__} runs no true CFG")

    def _guide(self, positive: torch.Tensor, negative: torch.Tensor, scale: float) -> torch.Tensor:
        """True CFG of float32 velocity tokens ``(B, N, F)``: ``u_neg + s (u_pos - u_neg)``."""
        return negative + scale * (positive - negative)

    def true_cfg_velocity(
        self,
        transformer: ModelMixin,
        x: torch.Tensor,
        sigma: torch.Tensor,
        cond: Cond,
        guidance_scale: float | None,
    ) -> torch.Tensor:
        """The teacher velocity of a base guided by a negative prompt (:attr:`true_cfg`): one
        forward on the prompt at scale None or 1; else the prompt and the negative prompt (one
        doubled batch when their text lengths agree), combined by :meth:`_guide`."""
        prompt = require(cond, "prompt_embeds", self.display_name, "(B, L, joint_attention_dim)")
        mask = cond.get("prompt_embeds_mask")
        source = self._source(cond)
        height, width = x.shape[-2:]
        if guidance_scale is None or guidance_scale == 1.0:
            tokens = self._forward(transformer, x, sigma, prompt, mask, source)
            return as_velocity(tokens, height, width)
        if cond.get("negative_prompt_embeds") is None:
            raise ValueError(
                f"the {self.display_name} teacher uses true CFG (guidance_scale="
                f"{guidance_scale}): cond needs 'negative_prompt_embeds' (B, L', D) (and its "
                "mask 'negative_prompt_embeds_mask' (B, L') where the base takes one): the "
                "embedding of the empty negative prompt; got keys "
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
                None if source is None else source.repeat(2, 1, 1, 1),
            )
            u_pos, u_neg = tokens.float().chunk(2)
        else:
            u_pos = self._forward(transformer, x, sigma, prompt, mask, source).float()
            u_neg = self._forward(transformer, x, sigma, negative, negative_mask, source).float()
        return as_velocity(self._guide(u_pos, u_neg, guidance_scale), height, width)

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


def as_velocity(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``(B, N, C*4)`` tokens -> ``(B, C, H, W)`` in float32."""
    return unpack_tokens(tokens.float().unsqueeze(2), height, width).squeeze(1)


# The attention projections of a dual-stream (MM-DiT) block: image-stream q/k/v/out and
# text-stream (add_*) q/k/v/out.
DUAL_STREAM_ATTENTION = (
    r"transformer_blocks\.\d+\.attn\.(to_[qkv]|to_out\.0|add_[qkv]_proj|to_add_out)"
)
