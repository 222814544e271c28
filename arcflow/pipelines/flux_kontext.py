"""``ArcFluxKontextPipeline``: FLUX.1 Kontext with an ArcFlow adapter, editing in 2 NFE by default.

::

    pipe = ArcFluxKontextPipeline.from_pretrained("black-forest-labs/FLUX.1-Kontext-dev", ...)
    pipe.load_arcflow_adapter(ADAPTER_FOLDER)
    image = pipe(source, "make the circle blue", generator=torch.Generator().manual_seed(0))

Prompt encoding, the image's preprocessing and VAE encoding, and postprocessing are
FluxKontextPipeline's; denoising is the project's one sampling loop at the static shift, with the
source image's latents in the conditioning (``cond["image_latents"]``, see
:mod:`arcflow.models.arch.flux_kontext`).
"""

from __future__ import annotations

import torch
from diffusers import FluxKontextPipeline
from diffusers.image_processor import PipelineImageInput
from diffusers.pipelines.flux.pipeline_output import FluxPipelineOutput

from arcflow.pipelines.base import ArcFlowPipelineMixin, Generators, StepEndCallback
from arcflow.pipelines.flux import ArcFluxPipeline


class ArcFluxKontextPipeline(ArcFlowPipelineMixin, FluxKontextPipeline):
    """FluxKontextPipeline sampling an ArcFlow student (see :meth:`__call__`)."""

    arch = "flux_kontext"
    output_class = FluxPipelineOutput
    # FLUX.1-dev's prompt encoding: Kontext reads the prompt with the same T5 + CLIP.
    encode_cond = ArcFluxPipeline.encode_cond

    @torch.no_grad()
    def encode_image(
        self, image: PipelineImageInput, height: int | None = None, width: int | None = None
    ) -> torch.Tensor:
        """The image to edit as ``image_latents`` ``(N, C, h, w)`` float32: resized to ``height``
        x ``width`` (default: its own size) rounded down to the model's grid, then
        FluxKontextPipeline's preprocessing and VAE encoding (posterior mode, shifted and
        scaled like the latents)."""
        multiple = self.vae_scale_factor * 2
        first = image[0] if isinstance(image, list) else image
        own_height, own_width = self.image_processor.get_default_height_width(first)
        height = (height or own_height) // multiple * multiple
        width = (width or own_width) // multiple * multiple
        if height == 0 or width == 0:
            raise ValueError(f"the image to edit is smaller than one {multiple}-pixel token")
        resized = self.image_processor.resize(image, height, width)
        pixels = self.image_processor.preprocess(resized, height, width)
        pixels = pixels.to(device=self._execution_device, dtype=self.vae.dtype)
        return self._encode_vae_image(pixels, generator=None).float()

    @torch.no_grad()
    def __call__(
        self,
        image: PipelineImageInput,
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
        """Edit ``image`` as each prompt says, with ``num_inference_steps`` student evaluations.

        Args:
            image: the image to edit (one for every prompt), any size: it is resized to the
                model's grid (multiples of ``2 * vae_scale_factor``).
            height, width: the edited image's size; None: the source image's (after rounding).
            The rest as :meth:`ArcFluxPipeline.__call__`; ``guidance_scale`` None takes the
            adapter's (2.5, Kontext [dev]'s recommended).
        """
        source = self.encode_image(image)
        _, _, source_h, source_w = source.shape
        factor = self.vae_scale_factor
        defaults = self.call_defaults(
            guidance_scale=guidance_scale,
            height=height or source_h * factor,
            width=width or source_w * factor,
            max_sequence_length=max_sequence_length,
        )
        cond = self.encode_cond(prompt, num_images_per_prompt, defaults.pop("max_sequence_length"))
        batch = cond["prompt_embeds"].shape[0]
        if source.shape[0] not in (1, batch):
            raise ValueError(f"{source.shape[0]} images to edit for {batch} images to make")
        cond["image_latents"] = source.expand(batch, -1, -1, -1)
        if not self.transformer.config.guidance_embeds:
            defaults["guidance_scale"] = None
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
