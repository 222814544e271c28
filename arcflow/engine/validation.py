"""Sample grids during training, drawn with the shared sampler and logged to TensorBoard."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook

from arcflow.engine.ema import trainable_parameters
from arcflow.flow.sampling import make_noise, sample_student
from arcflow.registry import HOOKS
from arcflow.released import RELEASED_NFE, RELEASED_SHIFT


def image_grid(images: torch.Tensor, rows: int) -> np.ndarray:
    """``(N, 3, H, W)`` in [-1, 1] -> one ``(rows*H, cols*W, 3)`` uint8 image, filled row-major."""
    n, c, h, w = images.shape
    cols = -(-n // rows)
    padded = torch.full((rows * cols, c, h, w), -1.0)
    padded[:n] = images.float().clamp(-1, 1).cpu()
    grid = padded.view(rows, cols, c, h, w).permute(0, 3, 1, 4, 2).reshape(rows * h, cols * w, c)
    return ((grid + 1) * 127.5).round().to(torch.uint8).numpy()


def latent_preview(latents: torch.Tensor) -> torch.Tensor:
    """The first three latent channels scaled to [-1, 1], for runs without a VAE."""
    x = latents[:, :3].float()
    if x.shape[1] < 3:
        x = torch.cat([x, x[:, :1].expand(-1, 3 - x.shape[1], -1, -1)], dim=1)
    return x / x.abs().amax(dim=(1, 2, 3), keepdim=True).clamp(min=1e-6)


@HOOKS.register_module()
class ValidationSamplesHook(Hook):
    """Every ``interval`` iterations (and before training), sample a fixed grid and log it.

    Rows are seeds, columns prompts; the noise comes from :func:`make_noise` with one generator
    per (seed, prompt), so the grid equals what the pipelines draw for the same seeds. Every rank
    draws the grid (under FSDP each forward gathers weights from all ranks); rank 0 logs it.

    Args:
        interval: iterations between grids.
        prompts: the prompts; ``None`` takes the first ``num_prompts`` items of the training set
            (useful when training on cached embeddings).
        seeds: one row per seed.
        vae: a diffusers folder (or hub id) whose ``vae`` decodes the latents; by default the one
            the distiller's prompt encoder was loaded from; without either a latent preview is
            logged.
        nfe, timestep_ratio, shift: the sampler's settings.
        ema: sample with the EMA weights (when an EMA hook runs), else the raw weights.
    """

    priority = "BELOW_NORMAL"

    def __init__(
        self,
        interval: int = 500,
        prompts: list[str] | None = None,
        num_prompts: int = 4,
        seeds: tuple[int, ...] = (0, 1),
        vae: str | None = None,
        nfe: int = RELEASED_NFE,
        timestep_ratio: float = 1.0,
        shift: float = RELEASED_SHIFT,
        ema: bool = True,
    ) -> None:
        self.interval = interval
        self.prompts = list(prompts) if prompts is not None else None
        self.num_prompts = num_prompts
        self.seeds = tuple(seeds)
        self.vae = vae
        self.nfe = nfe
        self.timestep_ratio = timestep_ratio
        self.shift = shift
        self.ema = ema
        self._codec = None

    def _batch(self, runner) -> dict:
        if self.prompts is not None:
            return {"prompt": self.prompts}
        loader = runner.train_dataloader
        samples = [loader.dataset[i] for i in range(min(self.num_prompts, len(loader.dataset)))]
        return loader.collate_fn(samples)  # the training batches' collate (pads cached prompts)

    def _decoder(self, model):
        source = self.vae or getattr(model.prompt_encoder, "pretrained", None)
        if source is None:
            return None
        if self._codec is None:
            from arcflow.models.vae import LatentCodec

            cls = model.student.arch.vae_cls
            vae = cls.from_pretrained(source, subfolder="vae").to(model.student.transformer.device)
            self._codec = LatentCodec(vae.eval())
        return self._codec

    @contextmanager
    def _weights(self, runner):
        """Temporarily load the EMA tensors into the model, if asked and available."""
        ema_hook = next((h for h in runner.hooks if type(h).__name__ == "ArcFlowEMAHook"), None)
        if not self.ema or ema_hook is None or not ema_hook.ema:
            yield
            return
        params = trainable_parameters(runner.model)
        saved = {n: p.detach().clone() for n, p in params.items()}
        with torch.no_grad():
            for name, param in params.items():
                param.copy_(ema_hook.ema[name])
        try:
            yield
        finally:
            with torch.no_grad():
                for name, param in params.items():
                    param.copy_(saved[name])

    @torch.no_grad()
    def samples(self, runner) -> torch.Tensor:
        """The grid's images ``(seeds * prompts, 3, H, W)`` in [-1, 1]."""
        model = getattr(runner.model, "module", runner.model)
        batch = model.data_preprocessor(self._batch(runner), training=False)
        cond = model.conditioning(batch)
        prompts = len(next(iter(cond.values())))
        student = model.student
        height, width = model.latent_size
        device = next(iter(cond.values())).device
        images = []
        was_training = model.training
        model.eval()
        with self._weights(runner):
            for seed in self.seeds:
                generators = [
                    torch.Generator().manual_seed(seed * 100_003 + i) for i in range(prompts)
                ]
                noise = make_noise(
                    prompts, student.latent_channels, height, width, generators, device
                )
                latents = sample_student(
                    student, noise, cond, self.nfe, self.timestep_ratio, self.shift
                )
                decoder = self._decoder(model)
                images.append(
                    latent_preview(latents) if decoder is None else decoder.decode(latents)
                )
        model.train(was_training)
        return torch.cat(images)

    def _log(self, runner, step: int) -> None:
        images = self.samples(runner)
        if is_main_process():
            runner.visualizer.add_image(
                "val/samples", image_grid(images, rows=len(self.seeds)), step=step
            )

    def before_train(self, runner) -> None:
        self._log(runner, runner.iter)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if self.every_n_train_iters(runner, self.interval):
            self._log(runner, runner.iter + 1)
