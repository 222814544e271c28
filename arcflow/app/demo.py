"""What the web demo does with one request, without any web framework: check the settings, sample
the student (and, to compare, the teacher from the same noise) through the command line's own
functions, time each, and write the PNGs the command line would write.

One :class:`Demo` holds the pipeline loaded once per process; :meth:`Demo.generate` is safe to
call from several threads (a lock serialises sampling: the pipeline is one model on one device
and its call sets the student's guidance scale for the duration of the call).
"""

from __future__ import annotations

import math
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from arcflow.evaluation.features import PixelFeatures
from arcflow.evaluation.metrics import pairwise_distances, ratio_interval
from arcflow.pipelines.cli import CliSpec, LoadedPipeline, image_path, sample, save_sample

MAX_NFE = 8
MAX_IMAGES = 4
MAX_TEACHER_STEPS = 200
MAX_SIDE = 2048
MAX_SEED = 2**32 - 1
MAX_GUIDANCE = 20.0


class InputError(ValueError):
    """A setting of the request that cannot be sampled; the message says what to change."""


@dataclass(frozen=True)
class Request:
    """The settings of one press of "generate"."""

    prompt: str
    seed: int  # image k is drawn from seed + k, as the command line's --seed
    nfe: int
    guidance_scale: float | None = None  # None: the command line's (see Demo.default_guidance)
    num_images: int = 1
    height: int | None = None  # None: the model's default size
    width: int | None = None
    teacher_steps: int | None = None  # compare with the teacher sampled in N Euler steps


@dataclass
class Result:
    """The PNGs of one request and the seconds each sampler took for the whole batch."""

    request: Request
    images: list[Path]  # the student's image k
    comparisons: list[Path] = field(default_factory=list)  # student | teacher of image k
    student_seconds: float = 0.0
    teacher_seconds: float | None = None
    note: str | None = None  # what the user should know, e.g. that the prompt was cut
    # Several images compared with the teacher: the student's diversity over the teacher's and the
    # half-width of its 95 % interval (NaN for one pair), see relative_diversity.
    diversity: tuple[float, float] | None = None

    @property
    def files(self) -> list[Path]:
        return self.images + self.comparisons


def _whole(value: float | int | None, name: str, low: int, high: int) -> int:
    """``value`` as an int in ``[low, high]``, else an InputError naming the setting."""
    if value is None or not math.isfinite(value) or value != int(value):
        raise InputError(f"{name} must be a whole number from {low} to {high}, got {value}")
    if not low <= int(value) <= high:
        raise InputError(f"{name} must be from {low} to {high}, got {int(value)}")
    return int(value)


def relative_diversity(
    student: list[Image.Image], teacher: list[Image.Image]
) -> tuple[float, float]:
    """How varied the student's images of one prompt are next to the teacher's from the same
    seeds: the mean distance between two of the student's images over the teacher's mean for the
    same pairs of seeds (1.0: as varied as the teacher; 0: one image for every seed), with the 95 %
    interval of that ratio over the pairs. Features: :class:`PixelFeatures`, which need no model.
    A handful of images gives a rough reading (4 images: 6 pairs, which share images);
    ``tools/evaluate.py --seeds`` measures it over many prompts."""
    space = PixelFeatures()

    def distances(images: list[Image.Image]) -> torch.Tensor:
        pixels = np.stack([np.asarray(image.convert("RGB")) for image in images])
        return pairwise_distances(space(torch.from_numpy(pixels).permute(0, 3, 1, 2)))

    return ratio_interval(distances(student), distances(teacher))


class Demo:
    """The loaded pipeline of ``spec`` and the folder where every request writes its PNGs."""

    def __init__(self, spec: CliSpec, loaded: LoadedPipeline, out: Path) -> None:
        self.spec = spec
        self.loaded = loaded
        self.out = Path(out)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ what the page offers
    @property
    def pipe(self) -> Any:
        return self.loaded.pipe

    @property
    def size_multiple(self) -> int:
        """Image sides are multiples of this: one latent pixel per VAE factor, 2x2 per token."""
        return self.pipe.vae_scale_factor * 2

    @property
    def default_size(self) -> tuple[int, int]:
        """(height, width) of a call that names no size."""
        side = self.pipe.default_sample_size * self.pipe.vae_scale_factor
        return self.loaded.call["height"] or side, self.loaded.call["width"] or side

    @property
    def default_guidance(self) -> float | None:
        """The command line's guidance: its flag, the tiny preset's, else the adapter's (None:
        the base takes none)."""
        scale = self.loaded.call.get("guidance_scale", self.pipe.student.guidance_scale)
        return None if scale is None else float(scale)

    @property
    def model_name(self) -> str:
        """What the page calls the base: its Hub id, or a local folder's name and architecture
        (``tiny-flux (FLUX.1-dev architecture)``): never a model the page does not serve."""
        model = str(self.loaded.settings["model"])
        if not Path(model).expanduser().is_dir():
            return model
        return f"{Path(model).expanduser().resolve().name} ({self.spec.name} architecture)"

    @property
    def can_compare(self) -> bool:
        """Whether the teacher is still there (``--merge-lora`` folds it into the student)."""
        return not self.loaded.settings["merge_lora"]

    # ------------------------------------------------------------------ requests
    def warm_up(self) -> None:
        """Sample one throwaway 1-NFE image: the first request would otherwise pay the
        libraries' one-time set-up (1.3 s of the first tiny image's 1.5 s on the 2-core CPU)."""
        with self._lock:
            sample(self.pipe, "warm-up", 0, [0], dict(self.loaded.call, num_inference_steps=1))

    def check(self, request: Request) -> Request:
        """``request`` with whole numbers as ints, or an InputError saying what to change."""
        if not request.prompt or not request.prompt.strip():
            raise InputError("the prompt is empty: type what the image should show")
        guidance = request.guidance_scale
        if guidance is not None and not 0 <= guidance <= MAX_GUIDANCE:  # NaN fails it too
            raise InputError(
                f"guidance must be a number from 0 to {MAX_GUIDANCE:g}, got {guidance}"
            )
        sides = []
        multiple = self.size_multiple
        for name, value in (("height", request.height), ("width", request.width)):
            if value is None:
                sides.append(None)
                continue
            side = _whole(value, name, multiple, MAX_SIDE)
            if side % multiple:
                below = side // multiple * multiple
                raise InputError(
                    f"{name} {side} cannot be sampled by this model: image sides must be "
                    f"multiples of {multiple} (try {below} or {below + multiple})"
                )
            sides.append(side)
        teacher_steps = None
        if request.teacher_steps is not None:
            if not self.can_compare:
                raise InputError(
                    "this server merged the LoRA into the base (--merge-lora): there is no "
                    "teacher to compare with; restart it without --merge-lora"
                )
            teacher_steps = _whole(request.teacher_steps, "teacher steps", 1, MAX_TEACHER_STEPS)
        return Request(
            prompt=request.prompt.strip(),
            seed=_whole(request.seed, "seed", 0, MAX_SEED),
            nfe=_whole(request.nfe, "NFE", 1, MAX_NFE),
            guidance_scale=None if guidance is None else float(guidance),
            num_images=_whole(request.num_images, "number of images", 1, MAX_IMAGES),
            height=sides[0],
            width=sides[1],
            teacher_steps=teacher_steps,
        )

    def generate(self, request: Request) -> Result:
        """Sample ``request`` (checked first) and write its PNGs into a new folder under
        ``out``: the student's image k as ``0000k_<prompt>.png`` and, when comparing,
        ``0000k_<prompt>_vs_teacher.png``, with the command line's metadata."""
        request = self.check(request)
        height, width = self.default_size
        call = dict(
            self.loaded.call,
            num_inference_steps=request.nfe,
            height=request.height or height,
            width=request.width or width,
        )
        settings = dict(self.loaded.settings, nfe=request.nfe)
        # At the command line's guidance, its call and metadata as they are (None stays None).
        if request.guidance_scale not in (None, self.default_guidance):
            call["guidance_scale"] = settings["guidance_scale"] = request.guidance_scale
        indices = list(range(request.num_images))
        with self._lock:
            start = time.perf_counter()
            images = sample(self.pipe, request.prompt, request.seed, indices, call)
            student_seconds = time.perf_counter() - start
            teacher, teacher_seconds = None, None
            if request.teacher_steps:
                start = time.perf_counter()
                teacher = sample(
                    self.pipe, request.prompt, request.seed, indices, call, request.teacher_steps
                )
                teacher_seconds = time.perf_counter() - start

        self.out.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=self.out))
        note = self.loaded.long_prompt_note(request.prompt)
        result = Result(request, [], [], student_seconds, teacher_seconds, note)
        if teacher and len(indices) > 1:
            result.diversity = relative_diversity(images, teacher)
        for k in indices:
            path = image_path(folder, k, request.num_images, request.prompt)
            metadata = dict(prompt=request.prompt, seed=request.seed + k, **settings)
            written = save_sample(
                path, images[k], metadata, teacher[k] if teacher else None, request.teacher_steps
            )
            result.images.append(written[0])
            result.comparisons += written[1:]
        return result
