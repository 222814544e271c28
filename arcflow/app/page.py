"""The demo's Gradio page: controls, the request's images (student, or student | teacher side by
side with the seconds each took), PNG downloads and the session's gallery.

Every press of "generate" goes through Gradio's queue one at a time (the model is one; see
:class:`arcflow.app.demo.Demo`); the gallery lives in per-session state, so two browsers never
see each other's images. The page's API endpoint ``/generate`` takes the same inputs in order.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from arcflow.app.demo import (
    MAX_GUIDANCE,
    MAX_IMAGES,
    MAX_NFE,
    MAX_SEED,
    MAX_TEACHER_STEPS,
    Demo,
    InputError,
    Request,
    Result,
)
from arcflow.released import RELEASED_NFE

# Tiny-world images are 64x64: show their pixels as squares, not as a blur. The request's images
# are shown whole: the gallery grows with them (height "auto", no scrolling box), and a square
# thumbnail is at most RESULT_SIDE pixels wide (Gradio makes a lone image as wide as the column,
# which a fixed height then cut off: 854 px of image in a 360 px box on a 1600 px wide window).
RESULT_SIDE = 420
CSS = (
    "#result img, #session img { image-rendering: pixelated; }\n"
    f"#result .thumbnail-item {{ max-width: {RESULT_SIDE}px; }}\n"
    "#result .grid-wrap { max-height: none; }\n"
    # Captions sit on the image's bottom right, where the tiny world draws shapes too: show them
    # only under the pointer (the request's seeds are in the line above its images).
    "#result .caption-label, #session .caption-label { opacity: 0; }\n"
    "#result .thumbnail-item:hover .caption-label, "
    "#session .thumbnail-item:hover .caption-label { opacity: 0.9; }"
)
DEFAULT_TEACHER_STEPS = 50

Captioned = list[tuple[str, str]]  # (PNG path, caption) as gr.Gallery takes them


@dataclass(frozen=True)
class PageDefaults:
    """The controls' starting values (the command line's generation flags)."""

    prompt: str = ""
    examples: tuple[str, ...] = ()  # prompts offered under the prompt box
    seed: int = 0
    nfe: int = RELEASED_NFE
    num_images: int = 1
    teacher_steps: int | None = None  # the "compare" switch starts on with N steps
    show_size: bool = True  # the tiny stacks were trained at one size: hide the control


def timing_text(result: Result) -> str:
    """``student, 2 NFE: 0.05 s | teacher, 50 Euler steps: 1.90 s (38x)`` in Markdown."""
    request = result.request
    text = f"**ArcFlow student**, {request.nfe} NFE: **{result.student_seconds:.2f} s**"
    if result.teacher_seconds is not None:
        ratio = result.teacher_seconds / max(result.student_seconds, 1e-9)
        text += (
            f" &nbsp;|&nbsp; **teacher**, {request.teacher_steps} Euler steps: "
            f"**{result.teacher_seconds:.2f} s** ({ratio:.0f}x)"
        )
    images = "image" if request.num_images == 1 else f"batch of {request.num_images} images"
    seeds = f"seed {request.seed}"
    if request.num_images > 1:
        seeds = f"seeds {request.seed} to {request.seed + request.num_images - 1}"
    text += f" &nbsp;(one {images}, {seeds}, prompt encoding and decoding included)"
    if result.diversity is not None and math.isnan(result.diversity[0]):
        text += "<br>**Diversity**: the teacher drew one image for every seed, nothing to compare"
    elif result.diversity is not None:
        ratio, half = result.diversity
        pairs = request.num_images * (request.num_images - 1) // 2
        spread = (
            "one pair: no interval"
            if math.isnan(half)
            else f"95 % interval {max(ratio - half, 0.0):.2f}-{ratio + half:.2f} over {pairs} pairs"
        )
        text += (
            f"<br>**Diversity** of these {request.num_images} images: **{ratio:.2f}x** the "
            f"teacher's ({spread}; 1.0: as varied as the teacher, 0: one image for every seed)"
        )
    return text


def shown_images(result: Result) -> Captioned:
    """The request's images as the page shows them: student | teacher when comparing."""
    request = result.request
    paths = result.comparisons or result.images
    label = ": student | teacher" if result.comparisons else ""
    return [(str(path), f"seed {request.seed + k}{label}") for k, path in enumerate(paths)]


def shown_source(source: str) -> str:
    """A folder under the current one relative to it (the tiny stacks, seen from the repository
    root), anything else as given."""
    path, here = Path(source), Path.cwd()
    return (
        str(path.relative_to(here)) if path.is_absolute() and path.is_relative_to(here) else source
    )


def build_page(demo: Demo, defaults: PageDefaults) -> gr.Blocks:
    """The page for ``demo``; launch it with :func:`launch`."""
    height, width = demo.default_size
    settings = demo.loaded.settings
    with gr.Blocks(title=f"ArcFlow: {demo.model_name}", analytics_enabled=False) as page:
        gr.Markdown(
            f"## ArcFlow: {demo.model_name} in a few steps\n"
            f"Base `{shown_source(settings['model'])}`, adapter "
            f"`{shown_source(settings['adapter'])}`. The same settings "
            "give the same pixels as the inference command line; each PNG carries its settings."
        )
        with gr.Row():
            with gr.Column(scale=2):
                prompt = gr.Textbox(
                    value=defaults.prompt,
                    label="Prompt",
                    placeholder="a red circle at the top left",
                    elem_id="prompt",
                )
                if len(defaults.examples) > 1:
                    gr.Examples([[example] for example in defaults.examples], [prompt])
                with gr.Row():
                    # No minimum / maximum: Gradio's own range check logs a traceback and
                    # names no setting; Demo.check says what to type.
                    seed = gr.Number(
                        value=defaults.seed,
                        label=f"Seed (0 to {MAX_SEED})",
                        precision=0,
                        elem_id="seed",
                    )
                    random_seed = gr.Checkbox(value=False, label="Random seed")
                nfe = gr.Slider(1, MAX_NFE, value=defaults.nfe, step=1, label="NFE (student steps)")
                guidance = gr.Number(
                    value=demo.default_guidance,
                    label=f"Guidance (0 to {MAX_GUIDANCE:g})",
                    step=0.5,
                    visible=demo.default_guidance is not None,
                )
                with gr.Row(visible=defaults.show_size):
                    size_step = demo.size_multiple
                    image_height = gr.Number(
                        value=height, label="Height", precision=0, step=size_step
                    )
                    image_width = gr.Number(value=width, label="Width", precision=0, step=size_step)
                num_images = gr.Slider(
                    1, MAX_IMAGES, value=defaults.num_images, step=1, label="Number of images"
                )
                compare = gr.Checkbox(
                    value=defaults.teacher_steps is not None and demo.can_compare,
                    label="Compare with the teacher (same noise, side by side)",
                    interactive=demo.can_compare,
                    info=None if demo.can_compare else "not with --merge-lora",
                    elem_id="compare",
                )
                teacher_steps = gr.Slider(
                    1,
                    MAX_TEACHER_STEPS,
                    value=defaults.teacher_steps or DEFAULT_TEACHER_STEPS,
                    step=1,
                    label="Teacher Euler steps",
                    elem_id="teacher-steps",
                )
                generate = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Column(scale=3):
                timing = gr.Markdown(elem_id="timing")
                # No label: Gradio draws it over the first image's top left corner.
                result = gr.Gallery(
                    label="This request",
                    show_label=False,
                    columns=2,
                    height="auto",
                    object_fit="contain",
                    elem_id="result",
                )
                downloads = gr.File(label="PNG downloads", file_count="multiple")
        session = gr.State([])
        gr.Markdown("#### This session")
        gallery = gr.Gallery(
            label="This session",
            show_label=False,
            columns=8,
            height=200,
            object_fit="contain",
            fit_columns=False,
            elem_id="session",
        )

        def request_of(
            prompt: str,
            seed: float | None,
            random_seed: bool,
            nfe: float,
            guidance: float | None,
            image_height: float | None,
            image_width: float | None,
            num_images: float,
            compare: bool,
            teacher_steps: float,
        ) -> Request:
            return Request(
                prompt=prompt,
                # A random seed is drawn when sampling; any valid one stands for it when checking.
                seed=secrets.randbelow(MAX_SEED + 1) if random_seed else seed,
                nfe=nfe,
                guidance_scale=guidance,
                num_images=num_images,
                height=image_height,
                width=image_width,
                teacher_steps=teacher_steps if compare else None,
            )

        def refuse(error: InputError) -> gr.Error:
            return gr.Error(str(error), title="Cannot generate", print_exception=False)

        def check(*settings: Any) -> None:
            """Refuse a bad request before the sampling event starts: an error there marks
            every output panel red, here it is one message and the panels keep their images."""
            try:
                demo.check(request_of(*settings))
            except InputError as error:
                raise refuse(error) from None

        def run(
            prompt: str,
            seed: float | None,
            random_seed: bool,
            nfe: float,
            guidance: float | None,
            image_height: float | None,
            image_width: float | None,
            num_images: float,
            compare: bool,
            teacher_steps: float,
            session: Captioned,
        ) -> tuple[Captioned, str, list[str], Captioned, Captioned, int]:
            request = request_of(
                prompt,
                seed,
                random_seed,
                nfe,
                guidance,
                image_height,
                image_width,
                num_images,
                compare,
                teacher_steps,
            )
            try:
                output = demo.generate(request)
            except InputError as error:
                raise refuse(error) from None
            if output.note:
                gr.Warning(output.note, title="Prompt too long")
            shown = shown_images(output)
            tag = f"{output.request.prompt} ({output.request.nfe} NFE)"
            session = session + [(path, f"{tag}, {caption}") for path, caption in shown]
            files = [str(path) for path in output.files]
            return shown, timing_text(output), files, session, session, output.request.seed

        inputs = [prompt, seed, random_seed, nfe, guidance, image_height, image_width]
        inputs += [num_images, compare, teacher_steps]
        outputs = [result, timing, downloads, gallery, session, seed]
        # Checking needs no model: it never waits behind a running request.
        checked = gr.on(
            [generate.click, prompt.submit],
            check,
            inputs,
            None,
            api_name=False,
            concurrency_limit=None,
            show_progress="hidden",
        )
        checked.success(run, inputs + [session], outputs, api_name="generate")
    return page


def launch(page: gr.Blocks, demo: Demo, host: str, port: int, **kwargs: Any) -> None:
    """Serve ``page`` with one request sampling at a time; files under the demo's output folder
    are the only ones it may send besides Gradio's own."""
    # Gradio's queue imports pandas on the first request to summarise event timings: importing
    # it before serving takes ~0.3 s off the first click (1.0 -> 0.7 s for a tiny image here).
    import pandas  # noqa: F401

    page.queue(default_concurrency_limit=1)
    page.launch(
        server_name=host,
        server_port=port,
        allowed_paths=[str(Path(demo.out).resolve())],
        css=CSS,
        **kwargs,
    )
