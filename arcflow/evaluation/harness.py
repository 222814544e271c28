"""The evaluation harness (issue 7): every sampler from the same noise, measured side by side.

For each (prompt ``p``, seed ``k``) image ``i = p * seeds + k`` starts from the noise of seed
``seed + i`` drawn on the CPU (:func:`~arcflow.pipelines.sampling.make_noise`), the convention of
``inference_{flux,qwen}.py --num-images seeds``, so every sampler and the command-line pipelines
start image ``i`` from the same noise. Samplers are the project's one sampling loop:
``teacher<N>`` (N Euler steps with its guidance), ``linear<N>`` (the K = 1 shortcut adapter),
``arcflow<N>`` (N student evaluations) and ``<name><N>`` for any further student given by name
(ablations: another K, another teacher-ratio schedule).

Per sampler it reports, against the *reference* (the teacher with the most steps, run first on each
batch so that its images are at hand):

- Fréchet distance to the reference's samples and to real data, in each feature space given (the
  tiny world's attribute evaluator; Inception or CLIP for real models);
- caption match, overall, per attribute and per object count (tiny world);
- agreement from the same noise: pixel PSNR of the 8-bit images and latent MSE;
- diversity: mean pairwise feature distance across the seeds of one prompt;
- wall time of the sampling loop per image, NFE (transformer forwards) and speed-up.

Pixel metrics are taken on 8-bit images, as they are saved: generated and rendered images then go
through the same quantisation.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import torch
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from arcflow.data.scenes import parse_caption
from arcflow.evaluation.attributes import AttributeEvaluator
from arcflow.evaluation.metrics import diversity, frechet_distance, latent_mse, psnr
from arcflow.models.vae import LatentCodec
from arcflow.pipelines.sampling import (
    Cond,
    SupportsSampling,
    make_noise,
    sample_student,
    sample_teacher,
)

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


class FeatureSpace(Protocol):
    """Image features for Fréchet distances and diversity."""

    name: str

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` uint8 -> ``(N, D)``."""
        ...


class EvaluatorFeatures:
    """The attribute evaluator's penultimate features (the tiny world's FID space)."""

    name = "evaluator"

    def __init__(self, evaluator: AttributeEvaluator, batch_size: int = 256) -> None:
        self.evaluator = evaluator
        self.batch_size = batch_size

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        device = next(self.evaluator.parameters()).device
        chunks = [
            self.evaluator.features(to_signed(chunk).to(device)).float().cpu()
            for chunk in images.split(self.batch_size)
        ]
        return torch.cat(chunks)


class InceptionFeatures:
    """Standard FID features: the 2048-d pool features of the TorchScript Inception-v3
    (``inception-2015-12-05.pt`` of StyleGAN / clean-fid), which takes uint8 images of any size
    and resizes them itself. Loaded from a local file only: nothing is downloaded."""

    name = "inception"

    def __init__(self, path: str | Path, device: torch.device, batch_size: int = 64) -> None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"Inception checkpoint {path} not found; standard FID needs the TorchScript "
                "inception-2015-12-05.pt on disk (it is never downloaded). Omit --inception to "
                "skip it."
            )
        with warnings.catch_warnings():
            # TorchScript is the detector's published format; torch's deprecation of the
            # format changes nothing about loading this file.
            warnings.filterwarnings("ignore", "`torch.jit.load` is deprecated", DeprecationWarning)
            self.model = torch.jit.load(str(path), map_location=device).eval()
        self.device = device
        self.batch_size = batch_size

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        chunks = [
            self.model(chunk.to(self.device), return_features=True).float().cpu()
            for chunk in images.split(self.batch_size)
        ]
        return torch.cat(chunks)


class ClipScorer:
    """CLIP image features (for a CLIP-space FID and diversity) and the CLIP score
    ``100 * max(cos(image, text), 0)``, from a local transformers ``CLIPModel`` folder."""

    name = "clip"

    def __init__(self, path: str | Path, device: torch.device) -> None:
        from transformers import CLIPModel, CLIPProcessor

        if not Path(path).is_dir():
            raise FileNotFoundError(
                f"CLIP folder {path} not found; the CLIP score needs a local transformers "
                "CLIPModel folder (it is never downloaded). Omit --clip to skip it."
            )
        self.model = CLIPModel.from_pretrained(path, local_files_only=True).to(device).eval()
        self.processor = CLIPProcessor.from_pretrained(path, local_files_only=True)
        self.device = device

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        pixels = self.processor(images=list(images), return_tensors="pt")["pixel_values"]
        out = self.model.get_image_features(pixel_values=pixels.to(self.device))
        return _projected(out).float().cpu()

    @torch.no_grad()
    def score(self, image_features: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """``(N,)`` CLIP scores of image features ``(N, D)`` against their prompts."""
        tokens = self.processor(
            text=prompts, return_tensors="pt", padding=True, truncation=True
        ).to(self.device)
        text = _projected(self.model.get_text_features(**tokens)).float().cpu()
        cosine = torch.nn.functional.cosine_similarity(image_features, text, dim=-1)
        return 100 * cosine.clamp(min=0)


def _projected(output: Any) -> torch.Tensor:
    """CLIP's projected embeddings: transformers 4 returns the tensor, 5 an output whose
    ``pooler_output`` holds it."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """``(N, 3, H, W)`` in [-1, 1] -> uint8 on the CPU, rounded as a saved PNG is."""
    return images.detach().float().add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8).cpu()


def to_signed(images: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 in [-1, 1]."""
    return images.float().div(127.5).sub(1)


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
    shift: float = 3.2
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


def stack_from_pipeline(
    pipe: Any,
    students: dict[str, SupportsSampling] | None = None,
    height: int | None = None,
    width: int | None = None,
    max_sequence_length: int = 512,
) -> GenerationStack:
    """A stack from an ``ArcFluxPipeline`` / ``ArcQwenImagePipeline`` with its adapter loaded,
    sampling exactly as the pipeline's ``__call__`` does (Qwen-Image: the teacher's true CFG with
    the empty negative prompt). ``students``: further students by kind (``"linear"``, ablation
    names) beside the pipeline's own, ``"arcflow"``."""
    student = pipe.student
    _, _, latent_h, latent_w = pipe._latent_size(height, width)
    true_cfg = pipe.arch == "qwen_image" and student.guidance_scale not in (None, 1.0)

    def encode(prompts: list[str]) -> Cond:
        if pipe.arch == "qwen_image":
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
    caption_match: float | None = None
    attribute_accuracy: dict[str, float] = field(default_factory=dict)
    match_by_objects: dict[int, float] = field(default_factory=dict)
    psnr_vs_teacher_db: float | None = None
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


def _caption_scores(
    evaluator: AttributeEvaluator, images: torch.Tensor, prompts: list[str]
) -> tuple[float, dict[str, float], dict[int, float]]:
    """Overall match, per-attribute accuracy and match per object count."""
    score = evaluator.score(to_signed(images), prompts)
    counts = torch.tensor([len(parse_caption(p)) for p in prompts])
    by_objects = {int(n): score.match[counts == n].float().mean().item() for n in counts.unique()}
    attributes = {k: v for k, v in score.accuracy.items() if k != "match"}
    return score.accuracy["match"], attributes, by_objects


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
    evaluator: AttributeEvaluator | None = None,
    real_images: torch.Tensor | None = None,
    clip: ClipScorer | None = None,
    grid_prompts: int = 8,
    progress: bool = False,
) -> EvaluationResult:
    """Generate ``len(prompts) * seeds`` images per sampler and measure them (module docstring).

    Args:
        feature_spaces: spaces for FID and diversity (tiny world: ``EvaluatorFeatures``).
        evaluator: the tiny world's attribute evaluator, for caption match; its images are kept
            (64x64 uint8) until the end, since scores aggregate over the whole set.
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
        keep_images=evaluator is not None,
        clip=clip,
        grid_prompts=grid_prompts,
        progress=progress,
    )

    real_features = {}
    references: dict[str, dict[str, Any]] = {}
    if real_images is not None:
        real_features = {s.name: s(real_images) for s in feature_spaces}
        references = _reference_rows(stack, real_images, prompts, evaluator, feature_spaces)

    results = []
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
                row.diversity[name] = diversity(feats.view(len(prompts), seeds, -1))
        if got.psnr:
            row.psnr_vs_teacher_db = torch.cat(got.psnr).mean().item()
            row.latent_mse_vs_teacher = torch.cat(got.mse).mean().item()
        if got.clip:
            row.clip_score = torch.cat(got.clip).mean().item()
        if evaluator is not None:
            row.caption_match, row.attribute_accuracy, row.match_by_objects = _caption_scores(
                evaluator, torch.cat(got.images), texts
            )
        results.append(row)
    if reference is not None:
        ref_seconds = collected[reference.name].seconds
        for row in results:
            row.speedup = ref_seconds / max(collected[row.name].seconds, 1e-12)

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
    prompts: list[str],
    evaluator: AttributeEvaluator | None,
    feature_spaces: Sequence[FeatureSpace],
) -> dict[str, dict[str, Any]]:
    """Rows ``data``: what the evaluator reads off the real images (the ceiling of caption
    match); ``vae``: their encode -> decode (posterior mean), the ceiling of any generator
    decoded by this VAE: PSNR vs data, caption match and FID vs data."""
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
        rows["vae"][f"fid_vs_data_{space.name}"] = _frechet(space(recon), space(real_images))
    if evaluator is not None:
        for name, images in (("data", real_images), ("vae", recon)):
            match, attributes, by_objects = _caption_scores(evaluator, images, prompts)
            rows[name].update(
                caption_match=match, attribute_accuracy=attributes, match_by_objects=by_objects
            )
    return rows


# ------------------------------------------------------------------------------------ reports
def _fmt(value: float | None, percent: bool = False, spec: str = ".3g") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{100 * value:.1f}%" if percent else format(value, spec)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def markdown_table(result: EvaluationResult) -> str:
    """The results table (README format), then per-attribute accuracy and the standard metrics
    (CLIP score, FID in further feature spaces) where measured."""
    spaces = result.settings["feature_spaces"]
    space = spaces[0] if spaces else None
    header = ["sampler", "NFE", f"FID vs teacher ({space})", f"FID vs data ({space})"]
    header += ["caption match", "PSNR vs teacher (dB)", "latent MSE vs teacher", "diversity"]
    header += ["s / image", "speed-up"]
    rows = []
    for row in result.samplers:
        ref = row.name == result.reference
        rows.append(
            [
                row.name,
                str(row.nfe),
                "ref" if ref else _fmt(row.fid_vs_teacher.get(space)),
                _fmt(row.fid_vs_data.get(space)),
                _fmt(row.caption_match, percent=True),
                "ref" if ref else _fmt(row.psnr_vs_teacher_db, spec=".2f"),
                "ref" if ref else _fmt(row.latent_mse_vs_teacher),
                _fmt(row.diversity.get(space)),
                _fmt(row.seconds_per_image, spec=".4f"),
                "n/a" if row.speedup is None else f"{row.speedup:.1f}x",
            ]
        )
    for name, values in result.references.items():
        fid = _fmt(values.get(f"fid_vs_data_{space}")) if name == "vae" else "-"
        rows.append([f"({name})", "-", "-", fid, _fmt(values.get("caption_match"), True)])
        rows[-1] += ["-"] * (len(header) - len(rows[-1]))
    lines = _table(header, rows)

    attributes = sorted({k for row in result.samplers for k in row.attribute_accuracy})
    if attributes:
        rows = [
            [row.name] + [_fmt(row.attribute_accuracy.get(k), percent=True) for k in attributes]
            for row in result.samplers
        ]
        lines += ["", *_table(["sampler", *attributes], rows)]
    others = spaces[1:]
    if others or any(row.clip_score is not None for row in result.samplers):
        header = ["sampler", "CLIP score", *(f"FID vs teacher ({k})" for k in others)]
        rows = [
            [row.name, _fmt(row.clip_score)] + [_fmt(row.fid_vs_teacher.get(k)) for k in others]
            for row in result.samplers
        ]
        lines += ["", *_table(header, rows)]
    return "\n".join(lines) + "\n"


def image_grid(result: EvaluationResult, cell: int = 128) -> Image.Image:
    """Rows = samplers (labelled), columns = prompts (seed 0), each image scaled to ``cell`` px
    wide: small images with nearest-neighbour (pixels stay visible), large ones with Lanczos."""
    rows = list(result.grid.items())
    height, width = rows[0][1].shape[-2:]
    size = (cell, max(1, round(cell * height / width)))
    resample = Image.Resampling.NEAREST if width <= cell else Image.Resampling.LANCZOS
    label = 80
    columns = max(len(images) for _, images in rows)
    canvas = Image.new("RGB", (label + columns * size[0], len(rows) * size[1]), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (name, images) in enumerate(rows):
        draw.text((4, r * size[1] + size[1] // 2 - 6), name, fill="black")
        for c, image in enumerate(images):
            tile = Image.fromarray(image.permute(1, 2, 0).numpy()).resize(size, resample)
            canvas.paste(tile, (label + c * size[0], r * size[1]))
    return canvas


def _json_ready(value: Any) -> Any:
    """NaN becomes null: JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    return value


def write_report(result: EvaluationResult, out_dir: str | Path) -> dict[str, Path]:
    """``results.json``, ``results.md`` and ``grid.png`` under ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = dict(
        settings=result.settings,
        reference=result.reference,
        samplers=[asdict(row) for row in result.samplers],
        references=result.references,
    )
    paths = {"json": out / "results.json", "markdown": out / "results.md", "grid": out / "grid.png"}
    paths["json"].write_text(json.dumps(_json_ready(payload), indent=2) + "\n")
    paths["markdown"].write_text(markdown_table(result))
    image_grid(result).save(paths["grid"])
    return paths
