"""What the ArcFlow FLUX and Qwen-Image pipelines share: adapter loading, the static shift, the
call into the one sampling loop (:mod:`arcflow.flow.sampling`), progress bar, callbacks and
decoding.

The pipelines never denoise themselves: the starting noise comes from :func:`make_noise` in the
unpacked latent layout ``(B, C, H, W)`` and goes through :func:`sample_student` /
:func:`sample_teacher` exactly as in training-time validation and evaluation, so the same seed
gives the same latents everywhere. Packing to tokens happens inside the student's arch adapter;
the diffusers scheduler (and its resolution-dependent shift) is never used.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import torch
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback

from arcflow.flow.sampling import (
    Cond,
    make_noise,
    sample_student,
    sample_teacher,
    student_sigmas,
    teacher_sigmas,
)
from arcflow.models.adapter_format import load_arcflow_adapter
from arcflow.models.heads import ArcFlowHead
from arcflow.models.student import ArcFlowStudent
from arcflow.models.vae import LatentCodec
from arcflow.pipelines.loading import fill_sampling, sampling_defaults
from arcflow.released import RELEASED_SHIFT

# The static shift both released students were distilled with (docs/method.md, Conventions).

Generators = torch.Generator | list[torch.Generator] | None
StepEndCallback = (
    Callable[[Any, int, torch.Tensor, dict[str, torch.Tensor]], dict[str, torch.Tensor]]
    | PipelineCallback
    | MultiPipelineCallbacks
)


class ArcFlowPipelineMixin:
    """Mixed into a diffusers pipeline class that has ``transformer``, ``vae``,
    ``image_processor``, ``vae_scale_factor``, ``encode_prompt`` and ``progress_bar``."""

    arch: ClassVar[str]
    output_class: ClassVar[type]  # the base pipeline's output dataclass (``images=...``)
    arcflow_student: ArcFlowStudent | None = None
    # What the model folder's sampling_defaults.json sets (a tiny stack's image size, text length
    # and guidance): a call that leaves them out uses them, as the command lines do.
    sampling_defaults: dict[str, Any] = {}

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *args: Any, **kwargs: Any):
        """The base pipeline's ``from_pretrained``, plus the folder's sampling defaults."""
        pipe = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        pipe.sampling_defaults = sampling_defaults(str(pretrained_model_name_or_path))
        return pipe

    # The peft adapter name of the ArcFlow LoRA, beside any other LoRA the pipeline loads.
    arcflow_adapter_name: ClassVar[str] = "arcflow"

    # ------------------------------------------------------------------ adapter
    def load_arcflow_adapter(
        self, path_or_repo: str | Path, subfolder: str | None = None
    ) -> ArcFlowStudent:
        """Turn ``self.transformer`` (in place) into the ArcFlow student of a published-format
        folder or Hub repository subfolder (e.g. ``"ymyy307/ArcFlow", "arcflow-flux-2steps"``).

        Its LoRA is the peft adapter named :attr:`arcflow_adapter_name` (``"arcflow"``). LoRAs
        loaded before it stay active beside it at weight 1."""
        if isinstance(self.transformer.proj_out, ArcFlowHead):
            raise ValueError(
                "an ArcFlow adapter is already loaded into this pipeline's transformer; load the "
                "pipeline again to use another one"
            )
        earlier = self.get_active_adapters()
        self.arcflow_student = load_arcflow_adapter(
            self.transformer, path_or_repo, subfolder, adapter_name=self.arcflow_adapter_name
        )
        self.set_adapters(earlier)
        return self.arcflow_student

    def load_lora_weights(
        self,
        pretrained_model_name_or_path_or_dict: str | Path | dict[str, torch.Tensor],
        adapter_name: str | None = None,
        hotswap: bool = False,
        *,
        weight: float = 1.0,
        **kwargs: Any,
    ) -> None:
        """diffusers' LoRA loader, for a style (or any other) LoRA of the base model. The new
        LoRA joins the active ones at ``weight``; the ArcFlow LoRA stays on (diffusers alone
        would leave only the new one active, and the student would sample without its LoRA).
        ``set_adapters`` changes the weights afterwards."""
        before = set(self.get_list_adapters().get("transformer", []))
        super().load_lora_weights(
            pretrained_model_name_or_path_or_dict, adapter_name, hotswap=hotswap, **kwargs
        )
        if adapter_name is None:  # diffusers named it: the one adapter that is new
            (adapter_name,) = set(self.get_list_adapters().get("transformer", [])) - before
        weights = {**self.lora_weights, adapter_name: weight}
        self.set_adapters(list(weights), list(weights.values()))

    def set_adapters(
        self,
        adapter_names: list[str] | str,
        adapter_weights: float | list[float] | None = None,
        *,
        keep_arcflow: bool = True,
    ) -> None:
        """Activate LoRAs by name at the given weights (default 1), as diffusers does, except
        that the ArcFlow LoRA stays active at weight 1 unless named with another weight or
        ``keep_arcflow=False`` (the student without its LoRA is not a working sampler: turning it
        off must be asked for)."""
        names = [adapter_names] if isinstance(adapter_names, str) else list(adapter_names)
        if adapter_weights is None or isinstance(adapter_weights, (int, float)):
            weights = [1.0 if adapter_weights is None else adapter_weights] * len(names)
        else:
            weights = list(adapter_weights)
        if len(weights) != len(names):
            raise ValueError(f"{len(names)} adapter names but {len(weights)} weights")
        arcflow = self.arcflow_adapter_name
        if self.arcflow_student is not None and keep_arcflow and arcflow not in names:
            names, weights = [*names, arcflow], [*weights, 1.0]
        super().set_adapters(names, weights)
        self._lora_weights = {n: w for n, w in zip(names, weights, strict=True) if n != arcflow}

    def delete_adapters(self, adapter_names: list[str] | str) -> None:
        """Remove other LoRAs (diffusers' method); the ArcFlow LoRA is part of the student."""
        names = [adapter_names] if isinstance(adapter_names, str) else list(adapter_names)
        if self.arcflow_student is not None and self.arcflow_adapter_name in names:
            raise ValueError(
                f"'{self.arcflow_adapter_name}' is the ArcFlow student's own LoRA and cannot be "
                "deleted; load the pipeline again for the plain base model"
            )
        super().delete_adapters(names)
        self._lora_weights = {n: w for n, w in self.lora_weights.items() if n not in names}

    def unload_lora_weights(self, *args: Any, **kwargs: Any) -> None:
        """Remove every LoRA but the ArcFlow one (diffusers would remove that one too)."""
        if self.arcflow_student is None:
            super().unload_lora_weights(*args, **kwargs)
            return
        others = set(self.get_list_adapters().get("transformer", [])) - {self.arcflow_adapter_name}
        if others:
            self.delete_adapters(sorted(others))
        self.set_adapters([])

    @property
    def lora_weights(self) -> dict[str, float]:
        """The active LoRAs other than the ArcFlow one, by name, with their weights."""
        return dict(getattr(self, "_lora_weights", {}))

    def merge_arcflow_lora(self) -> None:
        """Fold the loaded adapter's LoRA into the transformer's weights for faster sampling
        (:meth:`ArcFlowStudent.merge_lora`); the teacher (``teacher_steps``) is gone afterwards."""
        self.student.merge_lora()

    @property
    def student(self) -> ArcFlowStudent:
        if self.arcflow_student is None:
            raise RuntimeError(
                f"no ArcFlow adapter loaded: call {type(self).__name__}.load_arcflow_adapter"
                "(path_or_repo, subfolder) first"
            )
        return self.arcflow_student

    # ------------------------------------------------------------------ shared call
    def latent_size(self, height: int | None, width: int | None) -> tuple[int, int, int, int]:
        """Image and unpacked-latent sizes; both sides must be multiples of vae_scale_factor * 2
        (one latent pixel per vae_scale_factor, 2x2 latent pixels per token)."""
        multiple = self.vae_scale_factor * 2
        height = height or self.default_sample_size * self.vae_scale_factor
        width = width or self.default_sample_size * self.vae_scale_factor
        if height % multiple or width % multiple:
            raise ValueError(
                f"height and width must be multiples of {multiple} for this VAE and 2x2 token "
                f"packing, got {height}x{width}"
            )
        return height, width, height // self.vae_scale_factor, width // self.vae_scale_factor

    def _step_callback(
        self,
        progress_bar: Any,
        sigmas: torch.Tensor,
        callback_on_step_end: StepEndCallback | None,
        tensor_inputs: list[str],
        cond: Cond,
    ) -> Callable[[int, float, torch.Tensor], torch.Tensor | None]:
        """The sampler's per-step callback: advance the bar and run ``callback_on_step_end`` as
        diffusers does, ``(pipe, step, timestep = 1000 * sigma evaluated, {name: tensor})``;
        ``"latents"`` it returns replaces the ``(B, C, H, W)`` latents."""
        unknown = sorted(set(tensor_inputs) - {"latents", "prompt_embeds"})
        if unknown:
            raise ValueError(f"callback_on_step_end_tensor_inputs: unknown {unknown}")

        def callback(step: int, sigma: float, latents: torch.Tensor) -> torch.Tensor | None:
            progress_bar.update()
            if callback_on_step_end is None:
                return None
            available = {"latents": latents, "prompt_embeds": cond["prompt_embeds"]}
            timestep = (sigmas[step] * 1000).float()
            outputs = callback_on_step_end(
                self, step, timestep, {k: available[k] for k in tensor_inputs}
            )
            return (outputs or {}).get("latents")

        return callback

    def call_defaults(self, **given: Any) -> dict[str, Any]:
        """``height``, ``width``, ``max_sequence_length`` and ``guidance_scale`` of a call: as
        given, else the folder's sampling default, else the pipeline's (see
        :func:`~arcflow.pipelines.loading.fill_sampling`)."""
        return fill_sampling(given, self.sampling_defaults)

    def _call(
        self, cond: Cond, return_dict: bool, tensor_inputs: tuple[str, ...], **sampling: Any
    ) -> Any:
        """The rest of both pipelines' ``__call__`` once the prompt is encoded."""
        images = self._generate(
            cond,
            batch=cond["prompt_embeds"].shape[0],
            callback_on_step_end_tensor_inputs=list(tensor_inputs),
            **sampling,
        )
        return self.output_class(images=images) if return_dict else (images,)

    @torch.no_grad()
    def _generate(
        self,
        cond: Cond,
        *,
        batch: int,
        height: int | None,
        width: int | None,
        num_inference_steps: int,
        timestep_ratio: float,
        shift: float | None,
        teacher_steps: int | None,
        guidance_scale: float | None,
        generator: Generators,
        latents: torch.Tensor | None,
        output_type: str,
        callback_on_step_end: StepEndCallback | None,
        callback_on_step_end_tensor_inputs: list[str],
    ) -> torch.Tensor | list | Any:
        """Noise -> student (or teacher) latents -> images. Returns what ``output_type`` asks:
        ``"latent"`` gives the unpacked latents ``(B, C, H/f, W/f)`` float32."""
        student = self.student
        height, width, latent_h, latent_w = self.latent_size(height, width)
        device = self._execution_device
        if latents is None:
            noise = make_noise(
                batch, student.latent_channels, latent_h, latent_w, generator, device
            )
        else:
            expected = (batch, student.latent_channels, latent_h, latent_w)
            if tuple(latents.shape) != expected:
                raise ValueError(
                    f"latents must be unpacked noise of shape {expected}, got "
                    f"{tuple(latents.shape)}"
                )
            noise = latents.to(device=device, dtype=torch.float32)
        shift = RELEASED_SHIFT if shift is None else shift
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        if teacher_steps:
            sigmas = teacher_sigmas(teacher_steps, shift)
        else:
            sigmas = student_sigmas(num_inference_steps, timestep_ratio, shift)

        configured_scale = student.guidance_scale
        if guidance_scale is not None:
            student.guidance_scale = guidance_scale
        try:
            with self.progress_bar(total=len(sigmas) - 1) as progress_bar:
                callback = self._step_callback(
                    progress_bar,
                    sigmas,
                    callback_on_step_end,
                    list(callback_on_step_end_tensor_inputs),
                    cond,
                )
                if teacher_steps:
                    out = sample_teacher(student, noise, cond, teacher_steps, shift, callback)
                else:
                    out = sample_student(
                        student, noise, cond, num_inference_steps, timestep_ratio, shift, callback
                    )
        finally:
            student.guidance_scale = configured_scale

        if output_type == "latent":
            images = out
        else:
            decoded = LatentCodec(self.vae).decode(out.to(device))
            images = self.image_processor.postprocess(decoded, output_type=output_type)
        self.maybe_free_model_hooks()
        return images
