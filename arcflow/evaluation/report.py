"""Reports of the evaluation harness: ``results.json``, the markdown results table and the image
grid of :class:`~arcflow.evaluation.harness.EvaluationResult`."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from arcflow.evaluation.harness import EvaluationResult, SamplerResult
from arcflow.evaluation.metrics import wilson_interval


def _fmt(value: float | None, percent: bool = False, spec: str = ".3g") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{100 * value:.1f}%" if percent else format(value, spec)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def markdown_table(result: EvaluationResult) -> str:
    """The results table (README format) with the reference rows, the VAE's reconstruction PSNR,
    caption match per attribute and object count, and the standard metrics (CLIP score, FID in
    further feature spaces) where measured."""
    lines = _sampler_table(result)
    if "vae" in result.references:
        db = _fmt(result.references["vae"]["psnr_vs_data_db"], spec=".2f")
        lines += [
            "",
            f"(vae): the rendered scenes encoded (posterior mean) and decoded: {db} dB PSNR.",
        ]
    lines += _caption_table(result) + _object_table(result) + _standard_table(result)
    return "\n".join(lines) + "\n"


def _psnr(row: SamplerResult) -> str:
    """``27.80 +- 0.41``: the mean PSNR and its 95 % interval's half-width."""
    text = _fmt(row.psnr_vs_teacher_db, spec=".2f")
    half = row.psnr_vs_teacher_ci95
    return text if half is None or half != half else f"{text} +- {half:.2f}"  # NaN: one image


def _relative_diversity(row: SamplerResult, space: str | None) -> str:
    """``0.93 +- 0.05``: diversity relative to the reference's and its 95 % interval."""
    ratio = row.diversity_vs_teacher.get(space)
    if ratio is None or ratio != ratio:
        return "n/a"
    half = row.diversity_vs_teacher_ci95.get(space, math.nan)
    return f"{ratio:.2f}" if half != half else f"{ratio:.2f} +- {half:.2f}"


def _sampler_table(result: EvaluationResult) -> list[str]:
    spaces = result.settings["feature_spaces"]
    space = spaces[0] if spaces else None
    header = ["sampler", "NFE", f"FID vs teacher ({space})", f"FID vs data ({space})"]
    header += ["caption match", "PSNR vs teacher (dB)", "latent MSE vs teacher", "diversity"]
    header += ["diversity vs teacher"]
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
                "ref" if ref else _psnr(row),
                "ref" if ref else _fmt(row.latent_mse_vs_teacher),
                _fmt(row.diversity.get(space)),
                "ref" if ref else _relative_diversity(row, space),
                _fmt(row.seconds_per_image, spec=".4f"),
                "n/a" if row.speedup is None else f"{row.speedup:.1f}x",
            ]
        )
    for name, values in result.references.items():
        fid = _fmt(values.get(f"fid_vs_data_{space}")) if name == "vae" else "-"
        rows.append([f"({name})", "-", "-", fid, _fmt(values.get("caption_match"), True)])
        rows[-1] += ["-"] * (len(header) - len(rows[-1]))
    return _table(header, rows)


def _caption_table(result: EvaluationResult) -> list[str]:
    """Caption match, its 95 % Wilson interval and per-attribute accuracy of the samplers and
    reference rows: per object count, and over all prompts ("all") first when they mix counts."""
    scored = {
        row.name: (
            row.caption_match,
            row.attribute_accuracy,
            row.accuracy_by_objects,
            row.images_by_objects,
        )
        for row in result.samplers
    }
    for name, values in result.references.items():
        if "caption_match" in values:
            scored[f"({name})"] = (
                values["caption_match"],
                values["attribute_accuracy"],
                values["accuracy_by_objects"],
                values["images_by_objects"],
            )
    attributes = sorted({k for _, per_attribute, _, _ in scored.values() for k in per_attribute})
    if not attributes:
        return []
    rows = []
    for name, (match, per_attribute, by_objects, images) in scored.items():
        groups = {str(n): (by_objects[n], images[n]) for n in sorted(by_objects)}
        if len(groups) > 1:
            groups = {"all": ({"match": match, **per_attribute}, sum(images.values())), **groups}
        for objects, (values, count) in groups.items():
            low, high = wilson_interval(round(values["match"] * count), count)
            interval = f"{100 * low:.1f}-{100 * high:.1f}%"
            cells = [_fmt(values.get(k), percent=True) for k in attributes]
            rows.append([name, objects, _fmt(values["match"], percent=True), interval, *cells])
    header = ["sampler", "objects", "caption match", "95 % interval", *attributes]
    return ["", *_table(header, rows)]


def _object_table(result: EvaluationResult) -> list[str]:
    """One-object caption match per stated size and shape (prompts that state a size)."""
    scored = {row.name: row.match_by_object for row in result.samplers}
    for name, values in result.references.items():
        scored[f"({name})"] = values.get("match_by_object", {})
    kinds = next((by_object for by_object in scored.values() if by_object), None)
    if kinds is None:
        return []
    header = ["sampler", *(f"{kind} ({int(v['prompts'])})" for kind, v in kinds.items())]
    rows = [
        [name, *(_fmt(by_object.get(kind, {}).get("match"), percent=True) for kind in kinds)]
        for name, by_object in scored.items()
    ]
    caption = "One-object prompts that state a size: caption match per size and shape (prompts)."
    return ["", caption, "", *_table(header, rows)]


def _standard_table(result: EvaluationResult) -> list[str]:
    """CLIP score and FID in the feature spaces after the first (Inception, CLIP)."""
    others = result.settings["feature_spaces"][1:]
    if not others and all(row.clip_score is None for row in result.samplers):
        return []
    header = ["sampler", "CLIP score", *(f"FID vs teacher ({k})" for k in others)]
    rows = [
        [row.name, _fmt(row.clip_score)] + [_fmt(row.fid_vs_teacher.get(k)) for k in others]
        for row in result.samplers
    ]
    return ["", *_table(header, rows)]


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
