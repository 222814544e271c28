"""The ArcFlow student and its teacher, one diffusers transformer serving both.

The base transformer keeps its weights and its ``forward``. Three things are added:

- ``proj_out`` becomes an :class:`~arcflow.models.heads.ArcFlowHead` (teacher projection kept
  inside), ``norm_out.linear`` a :class:`~arcflow.models.heads.ForkedLinear`;
- peft LoRA adapters on the released targets (docs/method.md, The student: LoRA).

Student = adapters on, student heads, trained copy of the final modulation. Teacher = adapters
disabled, the original ``proj_out`` and ``norm_out.linear``: exactly the base model. Trainable:
the heads, the student's ``norm_out.linear`` and the LoRA weights; everything else is frozen.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import torch
from diffusers import ModelMixin
from peft.tuners.lora import LoraLayer
from torch import nn

from arcflow.flow import ArcFlowPolicy
from arcflow.models.arch import ArchAdapter, Cond, get_arch, is_float8
from arcflow.models.heads import ArcFlowHead, ForkedLinear
from arcflow.models.lora import make_lora_config
from arcflow.models.packing import PACK, unpack_tokens
from arcflow.models.quantization import is_quantized
from arcflow.models.state_match import match_state
from arcflow.released import (
    RELEASED_LOG_GAMMA_RANGE,
    RELEASED_LORA_ALPHA,
    RELEASED_LORA_RANK,
    RELEASED_NUM_COMPONENTS,
)

LORA_ADAPTER_NAME = "default"
# The head's modules (proj_out.means, ...), never the blocks' own proj_out layers.
HEAD_MODULES_PATTERN = r"^proj_out\."


def resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """``"bfloat16"`` -> ``torch.bfloat16``; dtypes and None pass through."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    resolved = getattr(torch, dtype, None)
    if not isinstance(resolved, torch.dtype):
        raise ValueError(f"unknown torch dtype {dtype!r}")
    return resolved


class LoadResult(NamedTuple):
    missing: list[str]
    unexpected: list[str]


class ArcFlowStudent(nn.Module):
    """A diffusers FLUX / Qwen-Image transformer turned into an ArcFlow student and its teacher.

    Args:
        transformer: the base ``FluxTransformer2DModel`` / ``QwenImageTransformer2DModel``; it is
            modified in place (head swap, adapters) and registered as ``self.transformer``.
        arch: ``"flux"``, ``"qwen_image"`` or an :class:`ArchAdapter`.
        num_components: K, the mixture components (16 released; 1 is the linear shortcut).
        lora_rank, lora_alpha, lora_dropout, lora_init: the peft LoRA set-up; rank 0 adds none.
        lora_targets: module paths (or a peft regex); None gives the released list of the arch.
        lora_attention: with ``lora_targets=None``, adapt the attention projections too (not in
            the released students).
        guidance_scale: the teacher's guidance; None gives 3.5 (FLUX, embedded, the student gets it
            too) or 4.0 (Qwen-Image, true CFG in the teacher only).
        mean_bias_noise_std: std of the means bias noise at initialisation (0: exact teacher).
        log_gamma_range: ``(r_min, r_max)`` of the initial log momentum rates (released:
            ``(ln 0.2, ln 4.0)``); see :class:`ArcFlowHead`.
        init_seed: seed of that noise.
        gradient_checkpointing: recompute the transformer blocks in backward.
        trainable_dtype: dtype of the trainable tensors (e.g. float32 on a bf16 base); None keeps
            the base dtype. The base weights keep theirs either way; do not ``.to(dtype)`` the
            student afterwards, which would cast both.
        adapter_name: the peft adapter name of the LoRA. Training keeps the default (checkpoint
            keys contain it); the pipelines name it ``"arcflow"`` so that other LoRAs can be
            loaded and weighted beside it.
    """

    # The teacher it is distilled from (:mod:`arcflow.models.teacher_source`): set by the config
    # builder and by adapter loading, written beside an exported adapter; None when unknown.
    teacher_source: dict[str, Any] | None = None

    def __init__(
        self,
        transformer: ModelMixin,
        arch: str | ArchAdapter,
        num_components: int = RELEASED_NUM_COMPONENTS,
        lora_rank: int = RELEASED_LORA_RANK,
        lora_alpha: float = RELEASED_LORA_ALPHA,
        lora_dropout: float = 0.05,
        lora_init: str | bool = "gaussian",
        lora_targets: list[str] | str | None = None,
        lora_attention: bool = False,
        guidance_scale: float | None = None,
        mean_bias_noise_std: float = 0.05,
        log_gamma_range: tuple[float, float] = RELEASED_LOG_GAMMA_RANGE,
        init_seed: int = 0,
        gradient_checkpointing: bool = False,
        trainable_dtype: torch.dtype | str | None = None,
        adapter_name: str = LORA_ADAPTER_NAME,
    ) -> None:
        super().__init__()
        self.adapter_name = adapter_name
        adapter = get_arch(arch)
        adapter.check_transformer(transformer)
        if isinstance(transformer.proj_out, ArcFlowHead):
            raise ValueError("this transformer is already an ArcFlow student (proj_out is a head)")
        self._arch = adapter
        self.guidance_scale = (
            adapter.default_guidance_scale(transformer)
            if guidance_scale is None
            else guidance_scale
        )
        self.lora_rank = lora_rank
        self.lora_alpha = lora_alpha

        if lora_targets is not None and lora_attention:
            raise ValueError(
                "lora_attention=True extends the released targets; with explicit lora_targets, "
                "list the attention projections there instead"
            )
        targets = (
            adapter.lora_targets(transformer, lora_attention)
            if lora_targets is None
            else lora_targets
        )
        generator = torch.Generator().manual_seed(init_seed)
        # On a quantized base the new modules are created in the compute dtype from the
        # dequantized teacher weights; the teacher's own layers stay quantized.
        quantized = is_quantized(transformer)
        new_dtype = adapter.input_dtype(transformer) if quantized else None
        transformer.proj_out = ArcFlowHead(
            transformer.proj_out,
            num_components,
            PACK,
            mean_bias_noise_std,
            generator,
            tuple(log_gamma_range),
            dtype=new_dtype,
        )
        transformer.norm_out.linear = ForkedLinear(transformer.norm_out.linear, new_dtype)
        if lora_rank > 0:
            # New adapter tensors are created where the base lives (no host copy of a meta model).
            with torch.device(transformer.proj_out.teacher_proj.weight.device):
                transformer.add_adapter(
                    make_lora_config(lora_rank, lora_alpha, lora_dropout, lora_init, targets),
                    adapter_name=adapter_name,
                )
        self.transformer = transformer
        # Float8 storage of the base (diffusers' enable_layerwise_casting, before or after this)
        # must leave the heads and the LoRA in the compute dtype: the heads by name (peft's
        # layers and the forked norm are skipped by diffusers' own patterns), and a LoRA that
        # peft created in the float8 of the base layer it wraps is cast up here.
        skipped = transformer._skip_layerwise_casting_patterns or []
        transformer._skip_layerwise_casting_patterns = [*skipped, HEAD_MODULES_PATTERN]
        if trainable_dtype is None and (
            quantized or any(is_float8(p) for _, p in self._trainable_parameters())
        ):
            # peft creates a LoRA beside a GGUF / bitsandbytes layer in float32: bring it (and
            # any float8 copy) to the compute dtype.
            trainable_dtype = adapter.input_dtype(transformer)

        # peft leaves only the adapters trainable; state the whole trainable set explicitly.
        transformer.requires_grad_(False)
        for _, param in self._trainable_parameters():
            param.requires_grad_(True)
        if trainable_dtype is not None:
            self.set_trainable_dtype(trainable_dtype)
        self.set_gradient_checkpointing(gradient_checkpointing)
        # Found once: the teacher switch runs 8+ times an iteration, and walking every module of
        # a 12 B model each time (as the model-wide peft toggle does) costs as much as a forward
        # of a tiny one.
        self._lora_modules = list(self.lora_layers().values())

    # ------------------------------------------------------------------ structure
    @property
    def arch(self) -> ArchAdapter:
        return self._arch

    @property
    def head(self) -> ArcFlowHead:
        return self.transformer.proj_out

    @property
    def num_components(self) -> int:
        return self.head.num_components

    @property
    def latent_channels(self) -> int:
        return self.head.out_channels

    @property
    def patch_size(self) -> int:
        return self.head.patch_size

    def lora_layers(self) -> dict[str, LoraLayer]:
        """Adapted modules by path (relative to the transformer)."""
        return {
            name: module
            for name, module in self.transformer.named_modules()
            if isinstance(module, LoraLayer) and self.adapter_name in module.lora_A
        }

    def _trainable_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """The documented trainable set, whatever ``requires_grad`` says (transformer-relative)."""
        head = self.head
        modules: dict[str, nn.Module] = {
            "proj_out.means": head.means,
            "proj_out.logits": head.logits,
        }
        if head.log_rates is not None:
            modules["proj_out.log_rates"] = head.log_rates
        modules["norm_out.linear.student"] = self.transformer.norm_out.linear.student
        for path, layer in self.lora_layers().items():
            for ab in ("lora_A", "lora_B"):
                modules[f"{path}.{ab}.{self.adapter_name}"] = getattr(layer, ab)[self.adapter_name]
        for prefix, module in modules.items():
            for name, param in module.named_parameters():
                yield f"{prefix}.{name}", param

    @torch.no_grad()
    def set_trainable_dtype(self, dtype: torch.dtype | str) -> None:
        """Cast the trainable tensors (heads, forked modulation, LoRA) in place; the base weights
        keep their dtype.

        Training keeps them in float32 on a bf16 base. Sampling runs them in the base's dtype, as
        ``load_arcflow_adapter`` loads them: at full size on an H200 a float32 LoRA of rank 256
        makes a student forward cost 1.8x a teacher forward, a bf16 one 1.1x (docs/benchmarks.md).
        """
        dtype = resolve_dtype(dtype)
        for _, param in self._trainable_parameters():
            param.data = param.data.to(dtype)

    def trainable_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """``[(name, parameter)]`` of heads + ``norm_out.linear`` + LoRA, names as in
        ``self.named_parameters()``."""
        return [(f"transformer.{name}", param) for name, param in self._trainable_parameters()]

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The trainable tensors (detached views, not copies), keyed like
        :meth:`trainable_named_parameters`."""
        return {name: param.detach() for name, param in self.trainable_named_parameters()}

    @torch.no_grad()
    def load_trainable_state_dict(
        self, state_dict: dict[str, torch.Tensor], strict: bool = True
    ) -> LoadResult:
        """Copy trainable tensors in (cast to each parameter's dtype and device).

        A shape mismatch is always an error; missing or unexpected keys are errors when ``strict``
        and are returned otherwise.
        """
        params = dict(self.trainable_named_parameters())
        match = match_state(params, state_dict, "checkpoint", "model")
        problems = match.problems(missing=strict, unexpected=strict)
        if problems:
            raise ValueError("cannot load the trainable state dict: " + " | ".join(problems))
        for name, param in params.items():
            if name in state_dict:
                param.copy_(state_dict[name])
        return LoadResult(match.missing, match.unexpected)

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Switch activation checkpointing of the transformer blocks on or off."""
        if enabled:
            self.transformer.enable_gradient_checkpointing()
        else:
            self.transformer.disable_gradient_checkpointing()

    @property
    def lora_merged(self) -> bool:
        """Whether :meth:`merge_lora` folded the adapters into the base weights."""
        return any(layer.merged for layer in self._lora_modules)

    @torch.no_grad()
    def merge_lora(self) -> None:
        """Fold every LoRA update into its base weight, ``W <- W + (alpha / r) B A``: sampling only.

        A student forward then costs a teacher forward plus the heads: on an H200 at 1024 x 1024 a
        FLUX.1-dev student forward took 174 ms merged against 193 ms with the bf16 LoRA beside the
        base (docs/benchmarks.md). A merged low-precision weight cannot be unmerged exactly, so
        the teacher is gone: :meth:`teacher_mode`, and with it training and teacher sampling,
        raises afterwards. The trainable tensors are kept, so the adapter still exports.

        A quantized base is refused: its weights cannot take a float update without being
        dequantized, which would give back the memory the quantization saved.
        """
        if is_quantized(self.transformer):
            raise ValueError(
                "merge_lora needs a float base: this transformer is quantized, and merging would "
                "dequantize it; sample with the LoRA beside the quantized layers instead"
            )
        for layer in self._lora_modules:
            if not layer.merged:
                layer.merge(adapter_names=[self.adapter_name])

    # ------------------------------------------------------------------ teacher / student
    @contextmanager
    def teacher_mode(self) -> Iterator[None]:
        """Within the block the transformer is the plain base model.

        Each adapted layer is disabled through peft's layer API (which also flips the adapters'
        ``requires_grad``; the flags are restored on exit); the heads and the final modulation
        switch to the teacher's originals.
        Nested use is a no-op. Backpropagate student graphs outside the block: checkpointed blocks
        recompute in whichever mode is active at backward time.
        """
        if self.lora_merged:
            raise RuntimeError(
                "the LoRA is merged into the base weights (merge_lora), so the teacher is gone: "
                "teacher sampling and training need the transformer loaded again, unmerged"
            )
        head, modulation = self.head, self.transformer.norm_out.linear
        if not head.student_mode:
            yield
            return
        # Parameters are looked up at each call, not cached: FSDP replaces them with its shards.
        lora_flags = [
            (param, param.requires_grad)
            for layer in self._lora_modules
            for adapters in (layer.lora_A, layer.lora_B)
            for param in adapters[self.adapter_name].parameters()
        ]
        head.student_mode = modulation.student_mode = False
        for layer in self._lora_modules:
            layer.enable_adapters(False)
        try:
            yield
        finally:
            for layer in self._lora_modules:
                layer.enable_adapters(True)
            for param, flag in lora_flags:
                param.requires_grad_(flag)
            head.student_mode = modulation.student_mode = True

    def _check_inputs(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """Validate ``x`` (B, C, H, W); return sigma as a float32 ``(B,)`` tensor on x's device."""
        if x.ndim != 4 or x.shape[1] != self.latent_channels:
            raise ValueError(
                f"x must be an unpacked latent (B, {self.latent_channels}, H, W), got "
                f"{tuple(x.shape)}"
            )
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device)
        if sigma.ndim == 0:
            sigma = sigma.expand(x.shape[0])
        if tuple(sigma.shape) != (x.shape[0],):
            raise ValueError(
                f"sigma must be a float or a ({x.shape[0]},) tensor, got {sigma.shape}"
            )
        return sigma

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor, cond: Cond) -> ArcFlowPolicy:
        """The student policy at ``(x, sigma)``; see :meth:`student_policy`."""
        sigma = self._check_inputs(x, sigma)
        height, width = x.shape[-2:]
        tokens = self._arch.student_tokens(self.transformer, x, sigma, cond, self.guidance_scale)
        means, logits, log_rates = self.head.split(tokens)
        return ArcFlowPolicy(
            unpack_tokens(means, height, width),
            unpack_tokens(logits, height, width),
            None if log_rates is None else unpack_tokens(log_rates, height, width),
            sigma,
        )

    def student_policy(
        self, x: torch.Tensor, sigma: float | torch.Tensor, cond: Cond
    ) -> ArcFlowPolicy:
        """One student evaluation (adapters on, student heads; autograd as the caller sets it).

        Args:
            x: ``(B, C, H, W)`` unpacked latents at noise level ``sigma``.
            sigma: ``(B,)`` or a float in [0, 1] (the transformer's ``timestep``).
            cond: the conditioning dict of the architecture (see :mod:`arcflow.models.arch`).
        Returns:
            the policy: means ``(B, K, C, H, W)``, logits ``(B, K, 1, H, W)``, log-rates
            ``(B, K-1, 1, H, W)`` (None when K = 1), ``sigma_src = sigma``.
        """
        return self(x, sigma, cond)

    def teacher_velocity(
        self,
        x: torch.Tensor,
        sigma: float | torch.Tensor,
        cond: Cond,
        guidance_scale: float | None = None,
    ) -> torch.Tensor:
        """The guided teacher velocity ``(B, C, H, W)``, float32.

        Runs the base model (see :meth:`teacher_mode`); autograd mode is the caller's, and no graph
        reaches a trainable tensor. ``guidance_scale`` overrides the configured one (FLUX: embedded
        guidance; Qwen-Image: true CFG, ``cond`` must hold the negative embeddings unless it is 1).
        """
        sigma = self._check_inputs(x, sigma)
        scale = self.guidance_scale if guidance_scale is None else guidance_scale
        with self.teacher_mode():
            return self._arch.teacher_velocity(self.transformer, x, sigma, cond, scale)
