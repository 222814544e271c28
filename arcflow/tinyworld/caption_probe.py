"""Which caption words a tiny-world teacher reads, and at which noise levels.

For held-out scenes ``x0`` and fixed noise ``eps``, the teacher's velocity error on the objects,

    L(c, sigma) = sum_p near_p * mean_ch (v(x_sigma, sigma, c) - (eps - x0))_p^2 / sum_p near_p,

(``x_sigma = (1 - sigma) x0 + sigma eps``, ``near`` the objects' share of each latent pixel) is
measured with the true caption ``c`` and with counterfactual ones: the same sentence with one
attribute of the first object changed (colour, shape, size or position: :func:`edit_attribute`),
another scene's caption, and the empty prompt. The *gap* of a variant is its relative increase
``L(c') / L(c) - 1`` over the scenes whose caption it changed. A word the model ignores has a gap
of ~0 at every noise level; one it reads raises the loss where it decides the image (colour and
position at high noise, shape at mid noise for a teacher that has learnt shapes).

It is the diagnosis behind docs/tiny_world.md's account of the tiny teachers (a teacher that draws
a blob of the right colour at the right place shows a colour gap and no shape gap).

:func:`renoise_probe` asks the same question of whole samples: the scenes' latents are noised to a
level ``s`` and the teacher's sampler finishes them (:func:`~arcflow.flow.sampling.
sample_teacher` from ``start_sigma = s``), with the true caption and with each one-attribute edit.
The evaluator then says whether an edited attribute follows the caption or keeps the scene's
value: above the level where the model decides an attribute, the caption wins; below it, the
noised image does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from tqdm.auto import tqdm

from arcflow.flow.sampling import Cond, sample_teacher
from arcflow.released import RELEASED_SHIFT
from arcflow.tinyworld.evaluator import AttributeEvaluator
from arcflow.tinyworld.flow_matching import FlowMatchingTrainer
from arcflow.tinyworld.scene_latents import latent_object_mask
from arcflow.tinyworld.scenes import (
    COLORS,
    POSITIONS,
    SHAPES,
    SIZES,
    Scene,
    render_batch,
    sample_item,
)

ATTRIBUTE_VALUES: dict[str, tuple[str, ...]] = {
    "color": tuple(COLORS),
    "shape": SHAPES,
    "size": SIZES,
    "position": POSITIONS,
}
VARIANTS = ("true", *ATTRIBUTE_VALUES, "other_caption", "empty")


def edit_attribute(scene: Scene, attribute: str, rng: np.random.Generator) -> Scene:
    """``scene`` with its first object's ``attribute`` replaced by another value, drawn uniformly
    (a position only among the cells no other object occupies)."""
    if attribute not in ATTRIBUTE_VALUES:
        raise ValueError(f"attribute must be one of {tuple(ATTRIBUTE_VALUES)}, got {attribute!r}")
    first, *others = scene.objects
    taken = {getattr(first, attribute)}
    if attribute == "position":
        taken |= {obj.position for obj in others}
    options = [value for value in ATTRIBUTE_VALUES[attribute] if value not in taken]
    changed = replace(first, **{attribute: options[int(rng.integers(len(options)))]})
    return replace(scene, objects=(changed, *others))


def probe_prompts(n: int, seed: int = 0, num_objects: int | None = 1) -> dict[str, list[str]]:
    """The captions of the first ``n`` held-out scenes of ``seed``: ``"true"``, one list per
    attribute edit (same sentence, one word or phrase changed) and ``"other_caption"``."""
    prompts = {"true": [sample_item("heldout", seed, i, num_objects)[1] for i in range(n)]}
    for k, attribute in enumerate(ATTRIBUTE_VALUES):
        prompts[attribute] = []
        for i in range(n):
            rng = np.random.default_rng([seed, 99, i, k])

            def edit(scene: Scene, rng=rng, attribute=attribute) -> Scene:
                return edit_attribute(scene, attribute, rng)

            prompts[attribute].append(sample_item("heldout", seed, i, num_objects, edit)[1])
    # Another scene's caption: the next one (a different scene, the same caption distribution).
    prompts["other_caption"] = prompts["true"][1:] + prompts["true"][:1]
    return prompts


@torch.no_grad()
def probe_captions(
    trainer: FlowMatchingTrainer,
    n: int = 128,
    sigmas: Sequence[float] = (0.3, 0.5, 0.7, 0.9),
    seed: int = 0,
    num_objects: int | None = 1,
    batch_size: int = 64,
) -> dict[float, dict[str, dict[str, float]]]:
    """``{sigma: {variant: {"loss": L, "gap": L / L_true - 1, "count": scenes}}}``.

    ``L`` is the mean object-region velocity error (module doc) over the scenes whose caption the
    variant changed (``count``; a size edit leaves a caption that omits the size unchanged), and
    ``L_true`` the true caption's over the same scenes. Noise is fixed per sigma (``seed``), so
    every variant sees the same ``x_sigma``.
    """
    trainer.eval()
    scenes = [sample_item("heldout", seed, i, num_objects)[0] for i in range(n)]
    prompts = probe_prompts(n, seed, num_objects)
    prompts["empty"] = [""] * n
    per_scene: dict[float, dict[str, list[torch.Tensor]]] = {
        s: {v: [] for v in prompts} for s in sigmas
    }
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        images = render_batch(scenes[start:stop])
        x0 = trainer.encode(images)
        near = latent_object_mask(images, x0.shape[-2:]).squeeze(1)
        conds = {v: trainer.conditioning(p[start:stop]) for v, p in prompts.items()}
        for k, sigma in enumerate(sigmas):
            generator = torch.Generator().manual_seed(seed * 1000 + k * 7919 + start)
            eps = torch.randn(x0.shape, generator=generator)
            s = torch.full((stop - start,), float(sigma))
            x = (1 - sigma) * x0 + sigma * eps
            for variant, cond in conds.items():
                error = (trainer.velocity(x, s, cond).float() - (eps - x0)).pow(2).mean(1)
                loss = (error * near).sum((1, 2)) / near.sum((1, 2)).clamp_min(1e-6)
                per_scene[sigma][variant].append(loss)
    results: dict[float, dict[str, dict[str, float]]] = {}
    for sigma, batches in per_scene.items():
        losses = {variant: torch.cat(parts) for variant, parts in batches.items()}
        results[sigma] = {}
        for variant in VARIANTS:
            changed = torch.tensor([a != b for a, b in zip(prompts[variant], prompts["true"])])
            if variant == "true":
                changed = torch.ones(n, dtype=torch.bool)
            loss = losses[variant][changed].mean().item() if changed.any() else float("nan")
            base = losses["true"][changed].mean().item() if changed.any() else float("nan")
            results[sigma][variant] = {
                "loss": loss,
                "gap": loss / base - 1.0,
                "count": int(changed.sum()),
            }
    return results


def gap_table(results: dict[float, dict[str, dict[str, float]]]) -> str:
    """A markdown table: per sigma, the true caption's loss and each variant's gap in %."""
    variants = [v for v in VARIANTS if v != "true"]
    lines = [
        "| sigma | loss (true caption) | " + " | ".join(f"{v} gap" for v in variants) + " |",
        "|---" * (len(variants) + 2) + "|",
    ]
    for sigma, row in results.items():
        cells = [f"{100 * row[v]['gap']:+.1f} %" for v in variants]
        lines.append(f"| {sigma:g} | {row['true']['loss']:.4f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


@dataclass
class GuidedTeacher:
    """A trainer's transformer as the tiny stacks' sampler runs it: one forward at the trainer's
    embedded guidance (FLUX), or with ``cfg_scale`` true CFG with the empty prompt (Qwen-Image),
    ``u = u_neg + cfg_scale (u_pos - u_neg)``."""

    trainer: FlowMatchingTrainer
    cfg_scale: float | None = None
    _empty: dict[int, Cond] = field(default_factory=dict, repr=False)

    def teacher_velocity(self, x: torch.Tensor, sigma: torch.Tensor, cond: Cond) -> torch.Tensor:
        u = self.trainer.velocity(x, sigma, cond).float()
        if self.cfg_scale is None:
            return u
        if len(x) not in self._empty:
            self._empty[len(x)] = self.trainer.conditioning([""] * len(x))
        u_neg = self.trainer.velocity(x, sigma, self._empty[len(x)]).float()
        return u_neg + self.cfg_scale * (u - u_neg)


@torch.no_grad()
def renoise_probe(
    teacher: GuidedTeacher,
    evaluator: AttributeEvaluator,
    n: int = 100,
    sigmas: Sequence[float] = (0.9, 0.7, 0.5, 0.3),
    seed: int = 0,
    num_objects: int | None = 1,
    steps: int = 50,
    shift: float = RELEASED_SHIFT,
    batch_size: int = 50,
) -> dict[float, dict[str, dict[str, float]]]:
    """Which attributes the sampler still takes from the caption once the image is noised only to
    ``sigma`` (module doc), on the first ``n`` held-out scenes of ``seed``.

    Returns ``{sigma: {"true": accuracies, attribute: {"caption": a, "image": b}}}``: with the
    true caption, the evaluator's caption match and per-attribute accuracies; with an edited
    attribute, the share of its (changed) captions whose new value the sample shows
    (``caption``) and the share that keep the scene's value (``image``). Noise is fixed per
    sigma, so every caption finishes the same noised latents.
    """
    trainer = teacher.trainer
    trainer.eval()
    scenes = [sample_item("heldout", seed, i, num_objects)[0] for i in range(n)]
    prompts = probe_prompts(n, seed, num_objects)
    variants = ("true", *ATTRIBUTE_VALUES)
    starts = range(0, n, batch_size)
    x0 = torch.cat([trainer.encode(render_batch(scenes[i : i + batch_size])) for i in starts])
    # Every noise level finishes the same captions: encode them once.
    conds = {
        v: [trainer.conditioning(prompts[v][i : i + batch_size]) for i in starts] for v in variants
    }
    results: dict[float, dict[str, dict[str, float]]] = {}
    progress = tqdm(total=len(sigmas) * len(variants), desc="re-noised scenes", unit="caption")
    for k, sigma in enumerate(sigmas):
        eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed * 1000 + k))
        x_sigma = (1 - sigma) * x0 + sigma * eps
        results[sigma] = {}
        for variant in variants:
            images = []
            for i, cond in zip(starts, conds[variant]):
                x = sample_teacher(
                    teacher, x_sigma[i : i + batch_size], cond, steps, shift, start_sigma=sigma
                )
                images.append(trainer.codec.decode(x).float().clamp(-1, 1))
            samples = torch.cat(images)
            progress.update()
            if variant == "true":
                results[sigma]["true"] = evaluator.score(samples, prompts["true"]).accuracy
                continue
            changed = [i for i in range(n) if prompts[variant][i] != prompts["true"][i]]
            row = {}
            for side, captions in (("caption", prompts[variant]), ("image", prompts["true"])):
                chosen = [captions[i] for i in changed]
                row[side] = evaluator.score(samples[changed], chosen).accuracy[variant]
            results[sigma][variant] = row
    progress.close()
    return results


def renoise_table(results: dict[float, dict[str, dict[str, float]]]) -> str:
    """A markdown table of :func:`renoise_probe`: per start sigma, the caption match with the true
    caption and, per edited attribute, follows-the-caption / keeps-the-image in %."""
    attributes = list(ATTRIBUTE_VALUES)
    lines = [
        "| start sigma | caption match (true caption) | "
        + " | ".join(f"{a} edited: caption / image" for a in attributes)
        + " |",
        "|---" * (len(attributes) + 2) + "|",
    ]
    for sigma, row in results.items():
        cells = [
            f"{100 * row[a]['caption']:.0f} / {100 * row[a]['image']:.0f} %" for a in attributes
        ]
        match = f"{100 * row['true']['match']:.1f} %"
        lines.append(f"| {sigma:g} | {match} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


__all__ = [
    "ATTRIBUTE_VALUES",
    "VARIANTS",
    "GuidedTeacher",
    "edit_attribute",
    "gap_table",
    "probe_captions",
    "probe_prompts",
    "renoise_probe",
    "renoise_table",
]
