"""Tiny real models for the tests of every folder (a plain module: conftests import it, since
under ``--import-mode=importlib`` they cannot import each other).

- ``toy_transformer``: the diffusers FLUX / Qwen-Image classes at the ``"toy"`` size of
  ``arcflow.tinyworld.architectures`` (1 + 1 FLUX blocks, 4 latent channels), seeded random weights;
  ``TinyWorld``: students on them, with conditioning and latents shaped for them;
- ``tiny_world_model``: a tiny-world diffusers folder (its text side, a random VAE and a random
  ``"tiny"`` transformer), shaped like ``checkpoints/tiny-*`` without their training;
- ``text_and_vae_stacks``, ``scene_batch``, ``fixed_loss``, ``train_steps``: what the trainers'
  tests share.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import ModelMixin

from arcflow.models import ArcFlowStudent
from arcflow.models.loading import build_transformer
from arcflow.tinyworld.architectures import transformer_config

ARCHS = ("flux", "qwen_image")
TOY = {arch: transformer_config(arch, "toy") for arch in (*ARCHS, "flux2_klein")}
LATENT_CHANNELS = TOY["flux"]["in_channels"] // 4  # the toy latents' channels, 4
# The tests' students: K = 3, LoRA rank 2 without dropout.
STUDENT_KWARGS = dict(num_components=3, lora_rank=2, lora_alpha=2, lora_dropout=0.0)


def toy_transformer(arch: str, seed: int = 0, dtype: torch.dtype = torch.float32) -> ModelMixin:
    """A randomly initialised ``"toy"`` base transformer of ``arch`` on the CPU, in eval mode."""
    torch.manual_seed(seed)
    return build_transformer(arch, "toy", device="cpu", torch_dtype=dtype)


class TinyWorld:
    """Toy bases and students of both families, random conditioning and latents shaped for
    them."""

    configs = TOY

    def base(self, arch: str, seed: int = 0, dtype: torch.dtype = torch.float32):
        return toy_transformer(arch, seed, dtype)

    def student(self, arch: str, dtype: torch.dtype = torch.float32, **kwargs) -> ArcFlowStudent:
        """K = 3, LoRA rank 2 without dropout unless overridden, on ``base(arch)``."""
        return ArcFlowStudent(self.base(arch, dtype=dtype), arch, **{**STUDENT_KWARGS, **kwargs})

    def cond(self, arch: str, batch: int = 2, seed: int = 1, negative_len: int = 5) -> dict:
        """Random conditioning of ``arch``; the edit models' (FLUX.1 Kontext, Qwen-Image-Edit)
        holds a source image latent of another size (4 x 10) than :meth:`latents`' (8 x 6)."""
        gen = torch.Generator().manual_seed(seed)
        from arcflow.models.arch import get_arch

        dim = self.configs[get_arch(arch).family or arch]["joint_attention_dim"]
        if arch == "flux2_klein":  # padded prompts without a mask, true CFG
            return {
                "prompt_embeds": torch.randn(batch, 5, dim, generator=gen),
                "negative_prompt_embeds": torch.randn(batch, negative_len, dim, generator=gen),
            }
        if arch in ("flux", "flux_kontext"):
            cond = {
                "prompt_embeds": torch.randn(batch, 5, dim, generator=gen),
                "pooled_prompt_embeds": torch.randn(batch, 32, generator=gen),
            }
            if arch == "flux_kontext":
                source = torch.randn(batch, LATENT_CHANNELS, 4, 10, generator=gen)
                cond["image_latents"] = source
            return cond
        mask = torch.ones(batch, 5, dtype=torch.long)
        mask[0, -2:] = 0  # a padded prompt
        cond = {
            "prompt_embeds": torch.randn(batch, 5, dim, generator=gen),
            "prompt_embeds_mask": mask,
            "negative_prompt_embeds": torch.randn(batch, negative_len, dim, generator=gen),
            "negative_prompt_embeds_mask": torch.ones(batch, negative_len, dtype=torch.long),
        }
        if arch == "qwen_image_edit":
            cond["image_latents"] = torch.randn(batch, LATENT_CHANNELS, 4, 10, generator=gen)
        return cond

    def latents(self, batch: int = 2, height: int = 8, width: int = 6, seed: int = 2):
        gen = torch.Generator().manual_seed(seed)
        return torch.randn(batch, LATENT_CHANNELS, height, width, generator=gen)

    def adapter_round_trip(self, arch: str, folder: Path) -> tuple[str, torch.Tensor, torch.Tensor]:
        """A student moved off its initialisation (to fp16-representable weights, so the round
        trip is exact), saved, loaded on a fresh base: its adapter class name and 2-NFE samples
        of the saved and the loaded student from the same noise and conditioning."""
        from arcflow.flow.sampling import sample_student
        from arcflow.models.adapter_format import load_arcflow_adapter, save_arcflow_adapter

        student = self.student(arch).eval()
        self.randomize(student)
        with torch.no_grad():
            for _, param in student.trainable_named_parameters():
                param.copy_(param.half())
        save_arcflow_adapter(student, folder)
        class_name = json.loads((folder / "config.json").read_text())["_class_name"]
        loaded = load_arcflow_adapter(self.base(arch), folder)
        assert loaded.arch is student.arch
        noise, cond = self.latents(), self.cond(arch)
        with torch.no_grad():
            return (
                class_name,
                sample_student(student, noise, cond, 2),
                sample_student(loaded, noise, cond, 2),
            )

    @torch.no_grad()
    def randomize(self, student: ArcFlowStudent, seed: int = 3, scale: float = 0.1) -> None:
        """Move every trainable tensor away from its initialisation (LoRA B included)."""
        gen = torch.Generator().manual_seed(seed)
        for _, param in student.trainable_named_parameters():
            param.add_((torch.randn(param.shape, generator=gen) * scale).to(param.dtype))


def tiny_world_model(folder: Path, arch: str, seed: int = 0) -> Path:
    """A tiny-world pipeline folder with random VAE and ``"tiny"`` transformer; returns it."""
    from arcflow.tinyworld.stack import ASSEMBLERS, build_vae

    torch.manual_seed(seed)
    transformer = build_transformer(arch, "tiny", device="cpu")
    return ASSEMBLERS[arch](folder, build_vae(arch).eval(), transformer)


def scene_batch(size: int = 4) -> dict:
    """The first ``size`` training scenes of seed 0: ``image`` (B, 3, 64, 64) and ``prompt``."""
    from arcflow.tinyworld.scenes import SceneDataset

    items = [SceneDataset("train", seed=0)[i] for i in range(size)]
    return {
        "image": torch.stack([item["image"] for item in items]),
        "prompt": [item["prompt"] for item in items],
    }


def text_and_vae_stacks(root: Path) -> dict[str, str]:
    """Tiny-world folders of both families with random VAEs and the real text side (no
    transformer yet), as a teacher's training finds them."""
    from arcflow.tinyworld.stack import ASSEMBLERS, build_vae

    torch.manual_seed(0)
    return {arch: str(ASSEMBLERS[arch](root / arch, vae=build_vae(arch))) for arch in ARCHS}


def fixed_loss(model: torch.nn.Module, batch: dict) -> float:
    """``model.loss(batch)`` with the same random draws (sigmas, noise, dropout) every call."""
    torch.manual_seed(123)
    with torch.no_grad():
        return float(model.loss(batch)["loss"])


def train_steps(model: torch.nn.Module, batch: dict, steps: int, lr: float) -> None:
    """``steps`` Adam steps of ``model.train_step`` on ``batch``, each with the same draws."""
    from mmengine.optim import OptimWrapper

    params = [p for p in model.parameters() if p.requires_grad]
    wrapper = OptimWrapper(torch.optim.Adam(params, lr=lr))
    for _ in range(steps):
        torch.manual_seed(123)
        model.train_step(batch, wrapper)
