"""Prompt encoding through the stock diffusers pipelines (no re-implementation of templates)."""

from __future__ import annotations

import torch
from torch import nn

from arcflow.errors import SourceError
from arcflow.models.arch import get_arch
from arcflow.released import RELEASED_MAX_SEQUENCE_LENGTH


class PromptEncoder(nn.Module):
    """Frozen text encoder(s) of a diffusers folder or hub id, returning the conditioning dict.

    FLUX: ``prompt_embeds (B, L, 4096)`` (T5) and ``pooled_prompt_embeds (B, 768)`` (CLIP).
    Qwen-Image: ``prompt_embeds (B, L, 3584)``, ``prompt_embeds_mask (B, L)`` and, for the
    teacher's true CFG, ``negative_prompt_embeds`` / ``negative_prompt_embeds_mask`` of the empty
    prompt (padded to one length with the positives, so the CFG pair runs as one batch).

    Args:
        arch: a key of :data:`arcflow.models.arch.ARCHS` (``"flux"``, ``"qwen_image"``, ...).
        pretrained: hub id or local diffusers folder holding the tokenizers and text encoders.
        max_sequence_length: token budget of the long encoder (T5 / Qwen2.5-VL).
        torch_dtype: dtype of the encoders (e.g. ``"bfloat16"``).
        negative_prompt: Qwen-Image's negative prompt for the teacher's true CFG.
        offload: keep the encoders on the CPU and move them to the model's device only while
            they encode (online encoding next to a large transformer). They then sit outside the
            module tree, so the Runner's ``model.to(device)`` leaves them where they are.
    """

    def __init__(
        self,
        arch: str,
        pretrained: str,
        max_sequence_length: int = RELEASED_MAX_SEQUENCE_LENGTH,
        torch_dtype: str | None = None,
        negative_prompt: str = "",
        offload: bool = False,
    ) -> None:
        super().__init__()
        self.adapter = get_arch(arch)
        self.arch = self.adapter.name
        dtype = getattr(torch, torch_dtype) if isinstance(torch_dtype, str) else torch_dtype
        try:
            pipe = self.adapter.text_pipeline_cls.from_pretrained(
                pretrained, transformer=None, vae=None, torch_dtype=dtype
            )
        except OSError as error:
            raise SourceError(
                f"could not load the text encoders of '{pretrained}' ({error}). Without network "
                "access, pass a local diffusers pipeline folder holding tokenizer*/ and "
                "text_encoder*/ (model.prompt_encoder.pretrained in the config)."
            ) from error
        self.pipe = pipe
        self.pretrained = pretrained
        encoders = [
            m for m in (pipe.text_encoder, getattr(pipe, "text_encoder_2", None)) if m is not None
        ]
        for encoder in encoders:
            encoder.requires_grad_(False).eval()
        self.offload = offload
        if offload:
            self._offloaded = encoders
            # Follows the module's device: where the encoders run while encoding.
            self.register_buffer("_anchor", torch.empty(0), persistent=False)
        else:
            self.encoders = nn.ModuleList(encoders)
        self.max_sequence_length = max_sequence_length
        self.negative_prompt = negative_prompt

    @property
    def device(self) -> torch.device:
        if self.offload:
            return self._anchor.device
        return next(self.encoders.parameters()).device

    @property
    def token_limit(self) -> int:
        """Tokens the long encoder keeps (T5 / Qwen2.5-VL after the template); longer prompts are
        truncated."""
        return get_arch(self.arch).prompt_token_limit(self.pipe, self.max_sequence_length)

    def token_counts(self, prompts: list[str]) -> list[int]:
        """Tokens of each prompt in the long encoder before truncation."""
        return get_arch(self.arch).prompt_token_counts(self.pipe, prompts)

    @torch.no_grad()
    def forward(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        if not self.offload:
            return self._encode(prompts)
        for encoder in self._offloaded:
            encoder.to(self.device)
        try:
            return self._encode(prompts)
        finally:
            for encoder in self._offloaded:
                encoder.to("cpu")

    def _encode(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        return self.adapter.encode_prompts(
            self.pipe, prompts, self.device, self.max_sequence_length, self.negative_prompt
        )
