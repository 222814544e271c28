"""``ArcQwenImagePipeline``: Qwen-Image with an ArcFlow adapter, 2 NFE by default.

::

    pipe = ArcQwenImagePipeline.from_pretrained("Qwen/Qwen-Image", torch_dtype=bf16)
    pipe.load_arcflow_adapter("ymyy307/ArcFlow", subfolder="arcflow-qwen-2steps")
    image = pipe("a red fox", generator=torch.Generator().manual_seed(0)).images[0]

The student runs once per step on the positive prompt (no CFG: guidance was distilled into it);
the teacher, sampled for comparison, uses true CFG with the empty negative prompt, as in training.
"""

from __future__ import annotations

import torch
from diffusers import QwenImagePipeline
from diffusers.pipelines.qwenimage.pipeline_output import QwenImagePipelineOutput

from arcflow.flow.sampling import Cond
from arcflow.pipelines.base import ArcFlowPipelineMixin, Generators, StepEndCallback
from arcflow.released import RELEASED_MAX_SEQUENCE_LENGTH


class ArcQwenImagePipeline(ArcFlowPipelineMixin, QwenImagePipeline):
    """QwenImagePipeline sampling an ArcFlow student (see :meth:`__call__`)."""

    arch = "qwen_image"
    output_class = QwenImagePipelineOutput

    @torch.no_grad()
    def encode_cond(
        self,
        prompt: str | list[str],
        num_images_per_prompt: int = 1,
        max_sequence_length: int = RELEASED_MAX_SEQUENCE_LENGTH,
        negative_prompt: str | None = None,
    ) -> Cond:
        """QwenImagePipeline's prompt encoding as the conditioning dict: ``prompt_embeds``
        (B, L, 3584) and ``prompt_embeds_mask`` (B, L) (absent when nothing is padded); with a
        ``negative_prompt`` (for the teacher's CFG) also ``negative_prompt_embeds`` (1, L', 3584)
        and its mask, shared by the batch."""
        device = self._execution_device
        embeds, mask = self.encode_prompt(
            prompt,
            device=device,
            num_images_per_prompt=num_images_per_prompt,
            max_sequence_length=max_sequence_length,
        )
        cond = {"prompt_embeds": embeds}
        if mask is not None:
            cond["prompt_embeds_mask"] = mask
        if negative_prompt is not None:
            negative, negative_mask = self.encode_prompt(
                negative_prompt, device=device, max_sequence_length=max_sequence_length
            )
            cond["negative_prompt_embeds"] = negative
            if negative_mask is not None:
                cond["negative_prompt_embeds_mask"] = negative_mask
        return cond

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
        negative_prompt: str = "",
    ) -> QwenImagePipelineOutput | tuple:
        """Generate images with ``num_inference_steps`` student evaluations.

        Args are those of :meth:`ArcFluxPipeline.__call__`, except:
            guidance_scale: the teacher's true-CFG scale (None: the folder's sampling default,
                else the adapter's 4.0); the student takes none.
            negative_prompt: the teacher's CFG negative prompt (training used the empty one).
            latents: ``(B, 16, H/8, W/8)`` unpacked starting noise.
        """
        defaults = self.call_defaults(
            guidance_scale=guidance_scale,
            height=height,
            width=width,
            max_sequence_length=max_sequence_length,
        )
        cond = self.encode_cond(
            prompt,
            num_images_per_prompt,
            defaults.pop("max_sequence_length"),
            negative_prompt if teacher_steps else None,
        )
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
