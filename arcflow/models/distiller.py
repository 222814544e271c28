"""The ArcFlow distiller: trajectory imitation of a frozen teacher.

The method: docs/method.md, Distillation.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch
from mmengine.dist import get_rank
from mmengine.logging import MessageHub
from mmengine.model import BaseModel
from mmengine.optim import OptimWrapper
from torch import nn

from arcflow.flow import step_boundaries, warp_sigma
from arcflow.models.imitation import ImitationConfig, MicroBatch, imitate_segment, teacher_ratio
from arcflow.registry import MODELS
from arcflow.released import RELEASED_NFE

Cond = dict[str, torch.Tensor]

MODES = ("data_free", "data")


def iteration_generator(seed: int, iteration: int, rank: int) -> torch.Generator:
    """A CPU generator for one (iteration, rank): draws depend on nothing else, so a resumed run
    draws the same noise, intervals and dropout masks as an uninterrupted one."""
    return torch.Generator().manual_seed(hash((seed, iteration, rank)) & 0x7FFF_FFFF_FFFF_FFFF)


def current_iteration() -> int:
    """The Runner's iteration (0 outside a Runner)."""
    return int(MessageHub.get_current_instance().get_info("iter", 0))


@MODELS.register_module()
class ArcFlowDistiller(BaseModel):
    """Distils the student's teacher into its ArcFlow heads and LoRA.

    Args:
        student: an ``ArcFlowStudent`` or its config dict (``build_student_from_cfg``).
        prompt_encoder: a ``PromptEncoder`` (or its keyword arguments) that embeds a batch's
            ``prompt`` strings; ``None`` when batches carry cached embeddings.
        nfe, timestep_ratio: the step layout trained for (docs/method.md, Step layout).
        teacher_ratio_decay: ``N_decay``, iterations over which ``rho_T`` falls from 1 to 0.
        imitation: keyword arguments of :class:`ImitationConfig`.
        latent_size: ``(H, W)`` of the unpacked latents when a batch does not say.
        mode: ``"data_free"`` (rollout from noise) or ``"data"`` (start from real latents).
        seed: seeds the per-iteration generator.
        micro_batch_size: gradient accumulation: each iteration's batch runs forward and backward
            in micro-batches of this many samples, then takes one optimiser step (None: the whole
            batch at once). Memory holds one micro-batch's graph; the gradient is the whole
            batch's, the same as without accumulation up to float rounding when the LoRA has no
            dropout (peft draws its masks from torch's global generator per forward, so with
            dropout they differ, and the two agree in distribution only).
        compile: ``torch.compile`` the student's transformer in place (``True``, or a dict of
            ``torch.compile`` keyword arguments). The teacher and the student run the same
            module, so two graphs are built (adapters on / off), each once. The tiny FLUX
            distillation on 2 CPU cores runs 1.3x faster with it in float32, and the bf16 base
            gains most of its speed through it (docs/benchmarks.md); the first iterations pay the
            compilation (~1-2 minutes on 2 cores, seconds from inductor's cache afterwards).
    """

    def __init__(
        self,
        student: nn.Module | dict,
        prompt_encoder: nn.Module | dict | None = None,
        nfe: int = RELEASED_NFE,
        timestep_ratio: float = 1.0,
        teacher_ratio_decay: int = 1000,
        imitation: dict | None = None,
        latent_size: tuple[int, int] = (128, 128),
        mode: str = "data_free",
        seed: int = 0,
        micro_batch_size: int | None = None,
        compile: bool | dict = False,
        data_preprocessor: dict | None = None,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if micro_batch_size is not None and micro_batch_size < 1:
            raise ValueError(f"micro_batch_size must be >= 1 (or None), got {micro_batch_size}")
        if nfe < 1:
            raise ValueError(f"nfe must be >= 1, got {nfe}")
        if isinstance(student, dict):
            from arcflow.models.builder import build_student_from_cfg

            student = build_student_from_cfg(student, device="cpu")
        if isinstance(prompt_encoder, dict):
            from arcflow.models.text_encoders import PromptEncoder

            prompt_encoder = PromptEncoder(**prompt_encoder)
        self.student = student
        self.prompt_encoder = prompt_encoder
        if self.prompt_encoder is not None:
            self.prompt_encoder.requires_grad_(False)
        self.nfe = nfe
        self.timestep_ratio = timestep_ratio
        self.teacher_ratio_decay = teacher_ratio_decay
        self.imitation = ImitationConfig(**(imitation or {}))
        self.latent_size = tuple(latent_size)
        self.mode = mode
        self.seed = seed
        self.micro_batch_size = micro_batch_size
        if not isinstance(compile, (bool, dict)):
            raise ValueError(
                f"compile must be True, False or a dict of torch.compile arguments, got {compile!r}"
            )
        if compile:
            options = {} if compile is True else dict(compile)
            # nn.Module.compile works in place: parameter names, hooks, checkpoints and the EMA
            # see the same module as without it.
            self.student.transformer.compile(**options)

    # ------------------------------------------------------------------ inputs
    def conditioning(self, data: dict[str, Any]) -> Cond:
        """The conditioning dict of a batch: its cached embeddings, or its prompts encoded; an
        editing model's batch adds the latents of its images to edit (``image_latents``)."""
        cond = {k: v for k, v in data.items() if k.endswith(("_embeds", "_embeds_mask"))}
        if not cond:
            if self.prompt_encoder is None:
                raise ValueError(
                    "the batch has no cached embeddings (keys ending in '_embeds') and the "
                    "distiller has no prompt_encoder: set model.prompt_encoder in the config or "
                    "cache prompts"
                )
            with torch.no_grad():
                cond = self.prompt_encoder(list(data["prompt"]))
        if "image_latents" in data:
            cond = {**cond, "image_latents": data["image_latents"]}
        return cond

    def _latent_shape(self, data: dict[str, Any], batch: int) -> tuple[int, ...]:
        """The noise's shape: that of the batch's latents (data variant) or of its images to edit,
        else of its ``latent_size``, else ``self.latent_size``."""
        if "latents" in data:
            return (batch, self.student.latent_channels, *data["latents"].shape[-2:])
        if "image_latents" in data:  # an edit: the edited image has the source's size
            return (batch, self.student.latent_channels, *data["image_latents"].shape[-2:])
        size = data.get("latent_size")
        if size is None:
            height, width = self.latent_size
        else:
            sizes = {tuple(int(v) for v in s) for s in size}
            if len(sizes) != 1:
                raise ValueError(f"a batch must share one latent size, got {sorted(sizes)}")
            height, width = sizes.pop()
        return (batch, self.student.latent_channels, height, width)

    def _teacher(self, cond: Cond):
        def velocity(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            return self.student.teacher_velocity(x, sigma, cond)

        return velocity

    # ------------------------------------------------------------------ one segment
    def segment_loss(
        self,
        x_src: torch.Tensor,
        tau_src: float,
        segment: float,
        cond: Cond,
        rho_t: float,
        generator: torch.Generator,
        micro: MicroBatch | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Student forward at ``(x_src, sigma(tau_src))`` and its imitation loss on the segment
        (``micro``: the rows of the iteration's batch that ``x_src`` holds).

        Returns:
            ``(L, x_end)``: the segment's loss (with gradient) and the detached end state.
        """
        sigma_src = warp_sigma(tau_src, self.imitation.shift)
        sigma = torch.full((x_src.shape[0],), sigma_src, device=x_src.device)
        policy = self.student.student_policy(x_src, sigma, cond)
        teacher = self._teacher(cond)
        return imitate_segment(
            policy, x_src, tau_src, segment, teacher, rho_t, self.imitation, generator, micro
        )

    def forward(self, mode: str = "segment", **kwargs: Any) -> Any:
        """``segment``: one segment's loss (routed through a DDP/FSDP wrapper when there is one);
        ``loss``: the whole rollout's losses without an optimiser step."""
        if mode == "segment":
            return self.segment_loss(**kwargs)
        if mode == "loss":
            return self.rollout_losses(**kwargs)
        raise ValueError(f"unknown forward mode {mode!r}: use 'segment' or 'loss'")

    # ------------------------------------------------------------------ the rollout
    def _plan(
        self,
        data: dict[str, Any],
        cond: Cond,
        generator: torch.Generator,
        micro: MicroBatch | None = None,
    ) -> tuple[torch.Tensor, list[tuple[float, float, float]]]:
        """The start state and ``(tau_src, S, weight)`` of each segment trained this iteration.

        Data-free: pure noise, then all ``nfe`` segments in order, weights ``S_j`` (each segment
        starts where the previous one's rollout ended). Data variant: one segment chosen uniformly,
        starting from real latents noised to its start, weight 1. ``micro``: the start states of
        these rows only (the noise is drawn for the whole batch).
        """
        first = next(iter(cond.values()))
        micro = micro or MicroBatch.whole(len(first))
        taus = step_boundaries(self.nfe, self.timestep_ratio).tolist()
        noise = torch.randn(self._latent_shape(data, micro.size), generator=generator)
        noise = noise[micro.rows].to(first.device)
        if self.mode == "data":
            j = int(torch.randint(self.nfe, (1,), generator=generator))
            sigma = warp_sigma(taus[j], self.imitation.shift)
            latents = data["latents"][micro.rows].to(device=first.device, dtype=torch.float32)
            return (1 - sigma) * latents + sigma * noise, [(taus[j], taus[j] - taus[j + 1], 1.0)]
        return noise, [
            (taus[j], taus[j] - taus[j + 1], taus[j] - taus[j + 1]) for j in range(self.nfe)
        ]

    def rollout_losses(
        self, data: dict[str, Any], iteration: int = 0, rank: int = 0
    ) -> dict[str, torch.Tensor]:
        """Every weighted segment loss of one iteration, with gradient, without stepping."""
        cond = self.conditioning(data)
        generator = iteration_generator(self.seed, iteration, rank)
        rho_t = teacher_ratio(iteration, self.teacher_ratio_decay)
        x, plan = self._plan(data, cond, generator)
        losses = {}
        for j, (tau_src, segment, weight) in enumerate(plan):
            loss, x = self.segment_loss(x, tau_src, segment, cond, rho_t, generator)
            losses[f"loss_seg{j}"] = loss * weight
        return losses

    def train_step(
        self, data: dict[str, Any], optim_wrapper: OptimWrapper, wrapper: nn.Module | None = None
    ) -> dict[str, torch.Tensor]:
        """One iteration: a backward pass per student segment (and micro-batch), then one
        optimiser step.

        Each segment starts from the detached end of the previous one, so its backward may run at
        once and memory holds a single segment's graph; the gradient is the same. With
        ``micro_batch_size`` the batch's rows run in turn, each micro-batch's loss weighted by its
        share of the batch and every draw replayed from the iteration's generator
        (:class:`MicroBatch`), so the accumulated gradient is the whole batch's. Under DDP or FSDP,
        ``wrapper`` routes each segment's forward through the wrapper and all but the last
        backward run under its ``no_sync()``, so gradients are reduced once per iteration.
        """
        forward = wrapper if wrapper is not None else self
        data = self.data_preprocessor(data, training=True)
        iteration = current_iteration()
        rho_t = teacher_ratio(iteration, self.teacher_ratio_decay)
        cond = self.conditioning(data)
        batch = len(next(iter(cond.values())))
        micro_batches = MicroBatch.split(batch, self.micro_batch_size)
        log_vars: dict[str, torch.Tensor] = {}
        total = torch.zeros(())
        for m, micro in enumerate(micro_batches):
            # The same generator state for every micro-batch: each replays the whole batch's draws.
            generator = iteration_generator(self.seed, iteration, get_rank())
            # A conditioning tensor of batch 1 (a shared negative prompt) serves every row.
            micro_cond = {k: v[micro.rows] if len(v) == batch else v for k, v in cond.items()}
            x, plan = self._plan(data, micro_cond, generator, micro)
            for j, (tau_src, segment, weight) in enumerate(plan):
                last = m == len(micro_batches) - 1 and j == len(plan) - 1
                no_sync = getattr(forward, "no_sync", None)
                sync = nullcontext() if last or no_sync is None else no_sync()
                with sync, optim_wrapper.optim_context(forward):
                    loss, x = forward(
                        mode="segment",
                        x_src=x,
                        tau_src=tau_src,
                        segment=segment,
                        cond=micro_cond,
                        rho_t=rho_t,
                        generator=generator,
                        micro=micro,
                    )
                    optim_wrapper.backward(loss * (weight * micro.fraction))
                share = loss.detach().cpu() * micro.fraction
                log_vars[f"loss_seg{j}"] = log_vars.get(f"loss_seg{j}", 0) + share
                total = total + share * weight
        optim_wrapper.step()
        optim_wrapper.zero_grad()
        log_vars["loss"] = total
        log_vars["teacher_ratio"] = torch.tensor(rho_t)
        return log_vars
