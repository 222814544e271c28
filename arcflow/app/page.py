"""The demo's Gradio page: controls, the request's images (student, or student | teacher side by
side with the seconds each took), PNG downloads and the session's gallery.

Every press of "generate" goes through Gradio's queue one at a time (the model is one; see
:class:`arcflow.app.demo.Demo`); the gallery lives in per-session state, so two browsers never
see each other's images. The page's API endpoint ``/generate`` takes the same inputs in order.
"""

from __future__ import annotations

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
from arcflow.flow.time import RELEASED_NFE

# Tiny-world images are 64x64: show their pixels as squares, not as a blur.
CSS = "#result img, #session img { image-rendering: pixelated; }"
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
    return f"{text} &nbsp;(one {images}, prompt encoding and decoding included)"


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
    with gr.Blocks(title=f"ArcFlow {demo.spec.name}", analytics_enabled=False) as page:
        gr.Markdown(
            f"## ArcFlow: {demo.spec.name} in a few steps\n"
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
                    seed = gr.Number(
                        value=defaults.seed,
                        label="Seed",
                        precision=0,
                        minimum=0,
                        maximum=MAX_SEED,
                        elem_id="seed",
                    )
                    random_seed = gr.Checkbox(value=False, label="Random seed")
                nfe = gr.Slider(1, MAX_NFE, value=defaults.nfe, step=1, label="NFE (student steps)")
                guidance = gr.Number(
                    value=demo.default_guidance,
                    label="Guidance",
                    minimum=0,
                    maximum=MAX_GUIDANCE,
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
                result = gr.Gallery(
                    label="This request",
                    columns=2,
                    height=360,
                    object_fit="contain",
                    elem_id="result",
                )
                downloads = gr.File(label="PNG downloads", file_count="multiple")
        session = gr.State([])
        gallery = gr.Gallery(
            label="This session",
            columns=8,
            height=200,
            object_fit="contain",
            fit_columns=False,
            elem_id="session",
        )

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
            if random_seed:
                seed = secrets.randbelow(MAX_SEED + 1)
            request = Request(
                prompt=prompt,
                seed=seed,
                nfe=nfe,
                guidance_scale=guidance,
                num_images=num_images,
                height=image_height,
                width=image_width,
                teacher_steps=teacher_steps if compare else None,
            )
            try:
                output = demo.generate(request)
            except InputError as error:
                raise gr.Error(str(error), title="Cannot generate", print_exception=False) from None
            shown = shown_images(output)
            tag = f"{output.request.prompt} ({output.request.nfe} NFE)"
            session = session + [(path, f"{tag}, {caption}") for path, caption in shown]
            files = [str(path) for path in output.files]
            return shown, timing_text(output), files, session, session, output.request.seed

        inputs = [prompt, seed, random_seed, nfe, guidance, image_height, image_width]
        inputs += [num_images, compare, teacher_steps, session]
        outputs = [result, timing, downloads, gallery, session, seed]
        gr.on([generate.click, prompt.submit], run, inputs, outputs, api_name="generate")
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
