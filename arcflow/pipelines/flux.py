"""``ArcFluxPipeline``: FLUX.1-dev with an ArcFlow adapter, 2 NFE by default.

::

    pipe = ArcFluxPipeline.from_pretrained("black-forest-labs/FLUX.1-dev", torch_dtype=bf16)
    pipe.load_arcflow_adapter("ymyy307/ArcFlow", subfolder="arcflow-flux-2steps")
    image = pipe("a red fox", generator=torch.Generator().manual_seed(0)).images[0]

Prompt encoding, the VAE and postprocessing are FluxPipeline's; denoising is the project's one
sampling loop at the static shift 3.2 (never the scheduler's resolution-dependent shift).
"""

from __future__ import annotations

import torch
from diffusers import FluxPipeline
from diffusers.pipelines.flux.pipeline_output import FluxPipelineOutput

from arcflow.flow.sampling import Cond
from arcflow.pipelines.base import ArcFlowPipelineMixin, Generators, StepEndCallback
from arcflow.released import RELEASED_MAX_SEQUENCE_LENGTH


class ArcFluxPipeline(ArcFlowPipelineMixin, FluxPipeline):
    """FluxPipeline sampling an ArcFlow student (see :meth:`__call__`)."""

    arch = "flux"
    output_class = FluxPipelineOutput

    @torch.no_grad()
    def encode_cond(
        self,
        prompt: str | list[str],
        num_images_per_prompt: int = 1,
        max_sequence_length: int = RELEASED_MAX_SEQUENCE_LENGTH,
    ) -> Cond:
        """FluxPipeline's prompt encoding as the student's conditioning dict:
        ``prompt_embeds`` (B, L, 4096) and ``pooled_prompt_embeds`` (B, 768), each prompt repeated
        ``num_images_per_prompt`` times in a row. Under no_grad: tensors that require grad would
        steer attention to other kernels and change the last bits of the image."""
        embeds, pooled, _ = self.encode_prompt(
            prompt,
            prompt,
            device=self._execution_device,
            num_images_per_prompt=num_images_per_prompt,
            max_sequence_length=max_sequence_length,
        )
        return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        num_inference_steps: int = 2,
        timestep_ratio: float = 1.0,
        guidance_scale: float | None = None,
        height: int | None = None,
        width: int | None = None,
        num_images_per_prompt: int = 1,
        generator: Generators = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: StepEndCallback | None = None,
        callback_on_step_end_tensor_inputs: tuple[str, ...] = ("latents",),
        max_sequence_length: int | None = None,
        shift: float | None = None,
        teacher_steps: int | None = None,
    ) -> FluxPipelineOutput | tuple:
        """Generate images with ``num_inference_steps`` student evaluations.

        ``guidance_scale``, ``height``, ``width`` and ``max_sequence_length`` left at None come
        from the model folder's ``sampling_defaults.json`` when it has one (the tiny stacks), else
        the pipeline's defaults below.

        Args:
            prompt: one prompt or a list.
            num_inference_steps: nfe, any value >= 1 (2 is what the released model was distilled
                for).
            timestep_ratio: length of the last step relative to the others (1.0 released).
            guidance_scale: FLUX's embedded guidance, for the student and the teacher (None:
                the adapter's, 3.5 released).
            height, width: image size (default 1024), multiples of ``2 * vae_scale_factor``.
            num_images_per_prompt: images per prompt; the batch is prompt-major.
            generator: one CPU generator, or one per image so that an image does not depend on
                its batch (noise is drawn on the CPU either way).
            latents: starting noise ``(B, 16, H/8, W/8)`` in the unpacked layout instead of
                ``generator``.
            output_type: ``"pil"``, ``"np"``, ``"pt"`` or ``"latent"`` (unpacked latents).
            callback_on_step_end: diffusers-style ``fn(pipe, step, timestep, tensors) -> dict``;
                ``timestep`` is ``1000 * sigma`` of the evaluation, a returned ``"latents"``
                ``(B, C, H/8, W/8)`` replaces the latents.
            max_sequence_length: T5 tokens read of each prompt (512).
            shift: the static time shift; None gives the released 3.2.
            teacher_steps: sample the base teacher (adapters off) with this many Euler steps
                instead of the student, from the same noise, for comparison.
        """
        defaults = self.call_defaults(
            guidance_scale=guidance_scale,
            height=height,
            width=width,
            max_sequence_length=max_sequence_length,
        )
        cond = self.encode_cond(prompt, num_images_per_prompt, defaults.pop("max_sequence_length"))
        if not self.transformer.config.guidance_embeds:
            defaults["guidance_scale"] = None  # a base without guidance embedding takes none
        return self._call(
            cond,
            return_dict,
            callback_on_step_end_tensor_inputs,
            num_inference_steps=num_inference_steps,
            timestep_ratio=timestep_ratio,
            shift=shift,
            teacher_steps=teacher_steps,
            generator=generator,
            latents=latents,
            output_type=output_type,
            callback_on_step_end=callback_on_step_end,
            **defaults,
        )
