"""The evaluation harness: every sampler from the same noise, measured side by side.

For each (prompt ``p``, seed ``k``) image ``i = p * seeds + k`` starts from the noise of seed
``seed + i`` drawn on the CPU (:func:`~arcflow.flow.sampling.make_noise`), the convention of
``inference_{flux,qwen}.py --num-images seeds``, so every sampler and the command-line pipelines
start image ``i`` from the same noise. Samplers are the project's one sampling loop:
``teacher<N>`` (N Euler steps with its guidance), ``linear<N>`` (the K = 1 shortcut adapter),
``arcflow<N>`` (N student evaluations) and ``<name><N>`` for any further student given by name
(ablations: another K, another teacher-ratio schedule).

Per sampler it reports, against the *reference* (the teacher with the most steps, run first on each
batch so that its images are at hand):

- Fréchet distance to the reference's samples and to real data, in each feature space given (the
  tiny world's attribute evaluator; Inception or CLIP for real models);
- caption match, overall, per attribute, and both again per object count with the images behind
  each count (the report gives each count's rate its 95 % Wilson interval); for one-object
  prompts that state a size, caption match per stated size and shape ("large star") (tiny world);
- agreement from the same noise: pixel PSNR of the 8-bit images and latent MSE;
- diversity: mean pairwise feature distance across the seeds of one prompt, averaged over the
  prompts, and relative to the reference's (1.0: as varied as the teacher; 0: one image for every
  seed) with the 95 % interval of that ratio (paired by prompt, delta method);
- wall time of the sampling loop per image, NFE (transformer forwards) and speed-up.

Given real images (the tiny world's rendered scenes of the prompts), two reference rows bound what
any sampler can reach: ``data``, the caption scorer on the scenes themselves, and ``vae``, their
encode -> decode through the stack's VAE (posterior mean) with its PSNR against the scenes.

Pixel metrics are taken on 8-bit images, as they are saved: generated and rendered images then go
through the same quantisation.

The feature spaces live in :mod:`arcflow.evaluation.features`, the written reports (JSON, markdown
table, image grid) in :mod:`arcflow.evaluation.report`.
"""

from __future__ import annotations

import math
import os
import platform
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm.auto import tqdm

from arcflow.evaluation.features import ClipScorer, FeatureSpace, to_signed, to_uint8
from arcflow.evaluation.metrics import (
    diversity_per_prompt,
    frechet_distance,
    latent_mse,
    mean_interval,
    psnr,
    ratio_interval,
)
from arcflow.flow.sampling import (
    Cond,
    SupportsSampling,
    make_noise,
    sample_student,
    sample_teacher,
)
from arcflow.models.vae import LatentCodec
from arcflow.released import RELEASED_SHIFT

SAMPLER_KINDS = ("teacher", "linear", "arcflow")
# A kind has no digits, so "k4" cannot be read both as (k, 4) and (k4, N).
_SAMPLER_NAME = re.compile(r"^([a-z_]+)(\d+)$")


@dataclass(frozen=True)
class SamplerSpec:
    """``teacher50``: kind ``"teacher"``, 50 steps; ``arcflow2``: 2 student evaluations."""

    name: str
    kind: str
    steps: int


def parse_samplers(
    names: str | Sequence[str], kinds: Sequence[str] = SAMPLER_KINDS
) -> list[SamplerSpec]:
    """``"teacher50,arcflow2"`` (or a list of names) -> specs, in the given order; ``kinds`` are
    the known kinds (the teacher and the stack's students)."""
    items = names.split(",") if isinstance(names, str) else list(names)
    specs = []
    for item in (name.strip() for name in items):
        match = _SAMPLER_NAME.match(item)
        if match is None or match[1] not in kinds or int(match[2]) < 1:
            raise ValueError(
                f"unknown sampler {item!r}: use <kind><steps>, kind one of {tuple(kinds)}, "
                "steps >= 1 (e.g. teacher50, linear2, arcflow2)"
            )
        specs.append(SamplerSpec(item, match[1], int(match[2])))
    if len({s.name for s in specs}) != len(specs):
        raise ValueError(f"samplers repeat: {[s.name for s in specs]}")
    return specs


@dataclass
class GenerationStack:
    """What the harness samples with: text encoding, the students (the ArcFlow one's frozen base
    with adapters off is the teacher) and the VAE."""

    encode: Callable[[list[str]], Cond]
    codec: LatentCodec
    teacher: SupportsSampling
    students: dict[str, SupportsSampling]  # by kind: "arcflow", "linear", ablation names
    latent_shape: tuple[int, int, int]  # (C, H/f, W/f)
    teacher_forwards: int = 1  # transformer forwards per teacher step: 2 with true CFG
    shift: float = RELEASED_SHIFT
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float32
    # Where the weights came from: "model" (the base), "arcflow" and each further student.
    sources: dict[str, str] = field(default_factory=dict)


def stack_from_pipeline(
    pipe: Any,
    students: dict[str, SupportsSampling] | None = None,
    height: int | None = None,
    width: int | None = None,
    max_sequence_length: int | None = None,
    guidance_scale: float | None = None,
) -> GenerationStack:
    """A stack from an ``ArcFluxPipeline`` / ``ArcQwenImagePipeline`` with its adapter loaded,
    sampling exactly as the pipeline's ``__call__`` does (Qwen-Image: the teacher's true CFG with
    the empty negative prompt; what is not given comes from the model folder's sampling defaults,
    guidance included, which is set on the students). ``students``: further students by kind
    (``"linear"``, ablation names) beside the pipeline's own, ``"arcflow"``."""
    student = pipe.student
    call = pipe.call_defaults(
        height=height,
        width=width,
        max_sequence_length=max_sequence_length,
        guidance_scale=guidance_scale,
    )
    if call["guidance_scale"] is not None:
        for sampler in (student, *(students or {}).values()):
            if hasattr(sampler, "guidance_scale"):
                sampler.guidance_scale = call["guidance_scale"]
    max_sequence_length = call["max_sequence_length"]
    _, _, latent_h, latent_w = pipe.latent_size(call["height"], call["width"])
    true_cfg = student.arch.true_cfg and student.guidance_scale not in (None, 1.0)

    def encode(prompts: list[str]) -> Cond:
        if student.arch.true_cfg:
            return pipe.encode_cond(prompts, 1, max_sequence_length, "" if true_cfg else None)
        return pipe.encode_cond(prompts, 1, max_sequence_length)

    return GenerationStack(
        encode=encode,
        codec=LatentCodec(pipe.vae),
        teacher=student,
        students={"arcflow": student, **(students or {})},
        latent_shape=(student.latent_channels, latent_h, latent_w),
        teacher_forwards=2 if true_cfg else 1,
        device=pipe._execution_device,
    )


def load_stack(spec: Any, args: Any, students: dict[str, str]) -> GenerationStack:
    """The stack the evaluation tools share, from their common flags (``--preset``, ``--model``,
    ``--adapter``, ``--device``, ``--dtype``, ``--guidance-scale``, ``--height``, ``--width``,
    ``--max-sequence-length``; unset ones from the model folder's sampling defaults): the
    pipeline with its ArcFlow adapter plus ``students`` (name -> adapter folder), each on its own
    copy of the base, since an adapter modifies its base in place. Raises
    :class:`arcflow.pipelines.loading.LoadError` when the model or an adapter cannot be loaded."""
    from arcflow.models.adapter_format import load_arcflow_adapter
    from arcflow.models.loading import load_base_transformer
    from arcflow.models.student import resolve_dtype
    from arcflow.pipelines import loading

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = resolve_dtype(
        {"auto": "bfloat16" if device.type == "cuda" else "float32"}.get(args.dtype, args.dtype)
    )
    model, adapter = loading.resolve_sources(spec, args)
    call = loading.resolve_call(model, args)
    pipe = loading.load_pipeline(spec, model, adapter, dtype, str(device), offload=False)
    loaded = {
        name: load_arcflow_adapter(load_base_transformer(model, args.arch, dtype).to(device), path)
        for name, path in students.items()
    }
    stack = stack_from_pipeline(pipe, loaded, **call)
    stack.dtype = dtype
    stack.sources = {"model": model, "arcflow": adapter, **students}
    return stack


@dataclass
class SamplerResult:
    """One sampler's row. Agreement and FID-vs-teacher are None for the reference itself."""

    name: str
    nfe: int
    seconds_per_image: float
    speedup: float | None = None
    fid_vs_teacher: dict[str, float] = field(default_factory=dict)  # by feature space
    fid_vs_data: dict[str, float] = field(default_factory=dict)
    diversity: dict[str, float] = field(default_factory=dict)
    # diversity / the reference's diversity, and the half-width of its 95 % interval, by space
    diversity_vs_teacher: dict[str, float] = field(default_factory=dict)
    diversity_vs_teacher_ci95: dict[str, float] = field(default_factory=dict)
    caption_match: float | None = None
    attribute_accuracy: dict[str, float] = field(default_factory=dict)
    # per object count: "match" and the attribute accuracies over that count's prompts
    accuracy_by_objects: dict[int, dict[str, float]] = field(default_factory=dict)
    # images behind each count's rates (for their confidence intervals)
    images_by_objects: dict[int, int] = field(default_factory=dict)
    # one-object prompts stating a size, by "<size> <shape>": {"match": rate, "prompts": count}
    match_by_object: dict[str, dict[str, float]] = field(default_factory=dict)
    psnr_vs_teacher_db: float | None = None
    psnr_vs_teacher_ci95: float | None = None  # half-width of the mean's 95 % interval
    psnr_vs_teacher_per_image: list[float] = field(default_factory=list)  # for paired comparisons
    latent_mse_vs_teacher: float | None = None
    clip_score: float | None = None


@dataclass
class EvaluationResult:
    reference: str | None  # the teacher sampler the agreement columns compare to
    samplers: list[SamplerResult]
    references: dict[str, dict[str, Any]]  # "data" and "vae" rows of the tiny world
    settings: dict[str, Any]
    grid: dict[str, torch.Tensor]  # sampler -> (G, 3, H, W) uint8: seed 0 of the first G prompts


@dataclass
class _Collected:
    seconds: float = 0.0
    features: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    psnr: list[torch.Tensor] = field(default_factory=list)
    mse: list[torch.Tensor] = field(default_factory=list)
    clip: list[torch.Tensor] = field(default_factory=list)
    images: list[torch.Tensor] = field(default_factory=list)


def machine_description(device: torch.device) -> dict[str, Any]:
    """Where the timings come from: CPU model and threads, GPU, torch version and the date."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        cpu = names[0].split(":", 1)[1].strip() if names else cpu
    return dict(
        cpu=cpu,
        cpu_count=os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        torch=torch.__version__,
        date_utc=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _run(stack: GenerationStack, spec: SamplerSpec, noise: torch.Tensor, cond: Cond):
    if spec.kind == "teacher":
        return sample_teacher(stack.teacher, noise, cond, spec.steps, stack.shift)
    return sample_student(stack.students[spec.kind], noise, cond, spec.steps, shift=stack.shift)


def _frechet(features: torch.Tensor, reference: torch.Tensor) -> float:
    # Fewer than 2 samples give no covariance: NaN, which reports as "n/a".
    if len(features) < 2 or len(reference) < 2:
        return math.nan
    return frechet_distance(features, reference)


@dataclass
class CaptionScores:
    """How far one sampler's (or reference's) images show what their prompts say."""

    match: float  # share of images that show everything their prompt states
    attribute_accuracy: dict[str, float]  # e.g. {"color": .., "shape": ..}
    accuracy_by_objects: dict[int, dict[str, float]]  # {1: {"match": .., "color": ..}, 2: ..}
    images_by_objects: dict[int, int]  # {1: images of one-object prompts, 2: ..}
    match_by_object: dict[str, dict[str, float]]  # {"large star": {"match": .., "prompts": n}}


class CaptionScorer(Protocol):
    """Caption match: reads ``(N, 3, H, W)`` uint8 images against their ``N`` prompts.

    The tiny world's attribute evaluator is one (``arcflow.tinyworld.scoring``); the harness keeps
    a scorer's images until the end, since its scores aggregate over the whole set.
    """

    def __call__(self, images: torch.Tensor, prompts: list[str]) -> CaptionScores: ...


@torch.no_grad()
def _collect(
    stack: GenerationStack,
    order: list[SamplerSpec],
    reference: SamplerSpec | None,
    texts: list[str],
    *,
    seeds: int,
    seed: int,
    batch_prompts: int,
    feature_spaces: Sequence[FeatureSpace],
    keep_images: bool,
    clip: ClipScorer | None,
    grid_prompts: int,
    progress: bool,
) -> tuple[dict[str, _Collected], dict[str, torch.Tensor]]:
    """Generate every image of every sampler, batch by batch, keeping only what the metrics need
    (full images only when ``keep_images``: tiny-world caption match scores the whole set)."""
    collected = {s.name: _Collected() for s in order}
    grid: dict[str, list[torch.Tensor]] = {s.name: [] for s in order}

    # Untimed warm-up of every sampler on one image: first-call costs (allocations, kernels,
    # lazy initialisation) would otherwise be charged to whichever sampler runs first.
    cond = stack.encode(texts[:1])
    noise = make_noise(1, *stack.latent_shape, torch.Generator().manual_seed(seed), stack.device)
    for spec in order:
        _run(stack, spec, noise, cond)

    bar = tqdm(total=len(texts) * len(order), disable=not progress, unit="img", desc="evaluate")
    step = batch_prompts * seeds
    for start in range(0, len(texts), step):
        batch = texts[start : start + step]
        indices = range(start, start + len(batch))
        cond = stack.encode(batch)
        generators = [torch.Generator().manual_seed(seed + i) for i in indices]
        noise = make_noise(len(batch), *stack.latent_shape, generators, stack.device)
        in_grid = [j for j, i in enumerate(indices) if i % seeds == 0 and i // seeds < grid_prompts]
        ref_latents = ref_images = None
        for spec in order:
            bar.set_postfix_str(spec.name)
            got = collected[spec.name]
            _sync(stack.device)
            began = time.perf_counter()
            latents = _run(stack, spec, noise, cond)
            _sync(stack.device)
            got.seconds += time.perf_counter() - began
            images = to_uint8(stack.codec.decode(latents).clamp(-1, 1))
            latents = latents.float().cpu()
            features = {space.name: space(images) for space in feature_spaces}
            for name, feats in features.items():
                got.features.setdefault(name, []).append(feats)
            if clip is not None:
                clip_features = features[clip.name] if clip.name in features else clip(images)
                got.clip.append(clip.score(clip_features, batch))
            if keep_images:
                got.images.append(images)
            grid[spec.name] += [images[j] for j in in_grid]
            if spec is reference:
                ref_latents, ref_images = latents, images
            elif reference is not None:
                got.psnr.append(psnr(images.float(), ref_images.float(), data_range=255.0))
                got.mse.append(latent_mse(latents, ref_latents))
            bar.update(len(batch))
    bar.close()
    return collected, {name: torch.stack(images) for name, images in grid.items()}


@torch.no_grad()
def evaluate(
    stack: GenerationStack,
    samplers: Sequence[SamplerSpec],
    prompts: Sequence[str],
    *,
    seeds: int = 1,
    seed: int = 0,
    batch_prompts: int = 8,
    feature_spaces: Sequence[FeatureSpace] = (),
    scorer: CaptionScorer | None = None,
    real_images: torch.Tensor | None = None,
    clip: ClipScorer | None = None,
    grid_prompts: int = 8,
    progress: bool = False,
) -> EvaluationResult:
    """Generate ``len(prompts) * seeds`` images per sampler and measure them (module docstring).

    Args:
        feature_spaces: spaces for FID and diversity (tiny world: the attribute evaluator's
            features).
        scorer: caption match (tiny world: the attribute evaluator); the images it reads are
            kept until the end, since its scores aggregate over the whole set.
        real_images: ``(P, 3, H, W)`` uint8 real images of the prompts (tiny world: the rendered
            scenes) for FID vs data and the "data" / "vae" reference rows.
        clip: CLIP scorer: the CLIP score column (add it to ``feature_spaces`` for CLIP FID).
    """
    prompts = list(prompts)
    if not samplers or not prompts or seeds < 1:
        raise ValueError("need at least one sampler, one prompt and one seed")
    missing = sorted({s.kind for s in samplers} - {"teacher", *stack.students})
    if missing:
        raise ValueError(f"no student for sampler kinds {missing}; the stack has {stack.students}")
    teachers = [s for s in samplers if s.kind == "teacher"]
    reference = max(teachers, key=lambda s: s.steps) if teachers else None
    # The reference runs first on every batch: the others are compared with it right away.
    order = sorted(samplers, key=lambda s: s is not reference)
    texts = [p for p in prompts for _ in range(seeds)]
    total = len(texts)
    collected, grid = _collect(
        stack,
        order,
        reference,
        texts,
        seeds=seeds,
        seed=seed,
        batch_prompts=batch_prompts,
        feature_spaces=feature_spaces,
        keep_images=scorer is not None,
        clip=clip,
        grid_prompts=grid_prompts,
        progress=progress,
    )

    real_features = {}
    references: dict[str, dict[str, Any]] = {}
    if real_images is not None:
        real_features = {s.name: s(real_images) for s in feature_spaces}
        references = _reference_rows(
            stack, real_images, real_features, prompts, scorer, feature_spaces
        )

    results = []
    per_prompt: dict[str, dict[str, torch.Tensor]] = {}  # sampler -> space -> (P,) diversity
    for spec in samplers:
        got = collected[spec.name]
        nfe = spec.steps * (stack.teacher_forwards if spec.kind == "teacher" else 1)
        row = SamplerResult(spec.name, nfe, got.seconds / total)
        features = {name: torch.cat(parts) for name, parts in got.features.items()}
        for name, feats in features.items():
            if spec is not reference and reference is not None:
                ref_feats = torch.cat(collected[reference.name].features[name])
                row.fid_vs_teacher[name] = _frechet(feats, ref_feats)
            if name in real_features:
                row.fid_vs_data[name] = _frechet(feats, real_features[name])
            if seeds >= 2:
                values = diversity_per_prompt(feats.view(len(prompts), seeds, -1))
                per_prompt.setdefault(spec.name, {})[name] = values
                row.diversity[name] = values.mean().item()
        if got.psnr:
            values = torch.cat(got.psnr)
            row.psnr_vs_teacher_db, row.psnr_vs_teacher_ci95 = mean_interval(values)
            row.psnr_vs_teacher_per_image = values.tolist()
            row.latent_mse_vs_teacher = torch.cat(got.mse).mean().item()
        if got.clip:
            row.clip_score = torch.cat(got.clip).mean().item()
        if scorer is not None:
            scores = scorer(torch.cat(got.images), texts)
            row.caption_match = scores.match
            row.attribute_accuracy = scores.attribute_accuracy
            row.accuracy_by_objects = scores.accuracy_by_objects
            row.images_by_objects = scores.images_by_objects
            row.match_by_object = scores.match_by_object
        results.append(row)
    if reference is not None:
        ref_seconds = collected[reference.name].seconds
        for row in results:
            row.speedup = ref_seconds / max(collected[row.name].seconds, 1e-12)
            for name, values in per_prompt.get(row.name, {}).items():
                ratio, half = ratio_interval(values, per_prompt[reference.name][name])
                row.diversity_vs_teacher[name] = ratio
                row.diversity_vs_teacher_ci95[name] = half

    settings = dict(
        num_prompts=len(prompts),
        seeds=seeds,
        seed=seed,
        samplers=[s.name for s in samplers],
        feature_spaces=[s.name for s in feature_spaces],
        latent_shape=list(stack.latent_shape),
        shift=stack.shift,
        device=str(stack.device),
        machine=machine_description(stack.device),
    )
    return EvaluationResult(
        reference.name if reference else None, results, references, settings, grid
    )


def _reference_rows(
    stack: GenerationStack,
    real_images: torch.Tensor,
    real_features: dict[str, torch.Tensor],
    prompts: list[str],
    scorer: CaptionScorer | None,
    feature_spaces: Sequence[FeatureSpace],
) -> dict[str, dict[str, Any]]:
    """Rows ``data``: what the scorer reads off the real images ``(P, 3, H, W)`` uint8 (the
    ceiling of caption match); ``vae``: their encode -> decode (posterior mean), the ceiling of any
    generator decoded by this VAE: PSNR vs data, caption match and FID vs data.
    ``real_features``: the real images' features by space name."""
    signed = to_signed(real_images)
    recon = torch.cat(
        [
            to_uint8(stack.codec.decode(stack.codec.encode(x.to(stack.device), sample=False)))
            for x in signed.split(16)
        ]
    )
    rows: dict[str, dict[str, Any]] = {
        "data": {},
        "vae": {"psnr_vs_data_db": psnr(recon.float(), real_images.float(), 255.0).mean().item()},
    }
    for space in feature_spaces:
        rows["vae"][f"fid_vs_data_{space.name}"] = _frechet(space(recon), real_features[space.name])
    if scorer is not None:
        for name, images in (("data", real_images), ("vae", recon)):
            scores = scorer(images, prompts)
            rows[name].update(
                caption_match=scores.match,
                attribute_accuracy=scores.attribute_accuracy,
                accuracy_by_objects=scores.accuracy_by_objects,
                images_by_objects=scores.images_by_objects,
                match_by_object=scores.match_by_object,
            )
    return rows
