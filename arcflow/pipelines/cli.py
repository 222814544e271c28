"""The command line of ``inference_flux.py`` and ``inference_qwen.py`` (one implementation).

Image ``i`` (prompt-major: prompt ``p``'s ``k``-th image is ``i = p * num_images + k``) is drawn
from seed ``--seed + i`` with its own generator, and each prompt's images form one batch, so an
image does not depend on which other prompts run or where. Under ``torchrun`` the prompts are
dealt round-robin to the ranks (NCCL on CUDA, gloo on CPU) and every rank writes its own images
into the shared ``--out`` folder: the files equal those of a single process.

Defaults are the released models: ``black-forest-labs/FLUX.1-dev`` with the adapter
``ymyy307/ArcFlow/arcflow-flux-2steps``, and ``Qwen/Qwen-Image`` with
``ymyy307/ArcFlow/arcflow-qwen-2steps`` (``<hub repo>/<subfolder>``: the published repository holds
one subfolder per model). ``--preset tiny`` uses the tiny world's ``checkpoints/tiny-{flux,qwen}``
and ``checkpoints/tiny-{flux,qwen}-arcflow`` under the current folder (the repository root).
Image size, text length and guidance not given as flags come from the model folder's
``sampling_defaults.json`` when it has one (the tiny stacks: 64x64, and FLUX's T5 length and
guidance), else from the pipeline.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from arcflow.errors import UserError, run_cli, writable_dir
from arcflow.pipelines.loading import (
    EDIT_SPECS,
    PRESETS,
    WEIGHT_SUFFIXES,
    CliSpec,
    LoadError,
    check_image_size,
    load_loras,
    load_pipeline,
    quiet_libraries,
    resolve_call,
    resolve_sources,
)
from arcflow.released import RELEASED_NFE, RELEASED_SHIFT

# torch, diffusers and the pipelines load after argument parsing: --help and usage errors are
# instant instead of taking the ~10 s those imports cost.
if TYPE_CHECKING:
    import torch

EXIT_LOAD_ERROR = 2


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to a flag's help unless the help already speaks of its default
    or there is none to show (argparse's ArgumentDefaultsHelpFormatter repeats it, or prints
    ``(default: None)``)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, [], False, argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


def lora_argument(value: str) -> tuple[str, float]:
    """``PATH[:WEIGHT]`` -> (path, weight); the weight defaults to 1."""
    path, sep, weight = value.rpartition(":")
    if sep and path:
        try:
            return path, float(weight)
        except ValueError:
            if path.endswith(WEIGHT_SUFFIXES) or Path(path).expanduser().exists():
                raise argparse.ArgumentTypeError(
                    f"the weight {weight!r} after ':' in {value!r} is not a number"
                ) from None
            # otherwise a colon inside the path itself
    return value, 1.0


def add_preset_argument(parser: argparse.ArgumentParser) -> None:
    """``--preset NAME``: the registered presets (:data:`~arcflow.pipelines.loading.PRESETS`)
    stand in for --model and --adapter."""
    presets = "; ".join(f"{name}: {preset.help}" for name, preset in sorted(PRESETS.items()))
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help=f"{presets} (its folders unless --model / --adapter say otherwise)"
        if PRESETS
        else "none registered",
    )


def add_lora_argument(parser: argparse.ArgumentParser) -> None:
    """``--lora PATH[:WEIGHT]`` (repeatable), for every front end that samples a pipeline."""
    parser.add_argument(
        "--lora",
        action="append",
        default=[],
        type=lora_argument,
        metavar="PATH[:WEIGHT]",
        help="a further LoRA of the base model (a diffusers LoRA folder or .safetensors file, or "
        "a Hub repo), applied at WEIGHT (default 1) beside the ArcFlow LoRA; repeatable",
    )


def check_out(out: Path) -> None:
    """``--out`` must be a writable folder or a ``.png`` file name in one."""
    is_png = out.suffix.lower() == ".png"
    if out.is_file() and not is_png:
        raise UserError(f"--out {out} is an existing file: name a folder or a .png file")
    writable_dir(out.parent if is_png else out, "--out")


def build_parser(spec: CliSpec) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=(
            f"Generate images with an ArcFlow-distilled {spec.name} (2 steps by default). "
            f"Multi-GPU: torchrun --nproc_per_node=N {Path(sys.argv[0]).name} --prompts-file F "
            "--out DIR shards the prompts across processes."
        ),
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("--prompt", action="append", default=[], help="a prompt (repeatable)")
    parser.add_argument("--prompts-file", type=Path, help="text file, one prompt per line")
    parser.add_argument("--seed", type=int, default=0, help="seed of image 0; image i uses seed+i")
    parser.add_argument(
        "--nfe", type=int, default=RELEASED_NFE, help="student evaluations per image"
    )
    parser.add_argument("--height", type=int, help="image height (default: the model's)")
    parser.add_argument("--width", type=int, help="image width (default: the model's)")
    parser.add_argument("--num-images", type=int, default=1, help="images per prompt")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("outputs"),
        help="a folder, or a .png file name (numbered when there are several images)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing images of the same names (default: keep them and number the new "
        "ones _2, _3, ...)",
    )
    parser.add_argument(
        "--model",
        help=f"base model: Hub id or local diffusers folder [default: {spec.default_model}]",
    )
    parser.add_argument(
        "--adapter",
        help=(
            "ArcFlow adapter: local folder or '<hub repo>/<subfolder>' "
            f"[default: {spec.default_adapter}]"
        ),
    )
    add_lora_argument(parser)
    add_preset_argument(parser)
    edit = EDIT_SPECS[spec.edit].name if spec.edit else None
    parser.add_argument(
        "--image",
        type=Path,
        help=(
            f"edit this image with {edit} as each prompt instructs (any size: resized to the "
            f"model's grid); --model / --adapter then name {edit} folders"
            if edit
            else f"editing is not available for {spec.name} in this version"
        ),
    )
    parser.add_argument("--device", help="default: cuda if available (cuda:LOCAL_RANK), else cpu")
    parser.add_argument(
        "--dtype",
        choices=["auto", "float32", "bfloat16", "float16"],
        default="auto",
        help="weights dtype; auto = bfloat16 on CUDA, float32 on CPU",
    )
    parser.add_argument(
        "--offload", action="store_true", help="model CPU offload (enable_model_cpu_offload)"
    )
    add_quantize_arguments(parser)
    parser.add_argument(
        "--teacher-steps",
        type=int,
        help="also sample the base teacher with N Euler steps from the same noise and save it "
        "side by side with the student's image (<name>_vs_teacher.png)",
    )
    parser.add_argument(
        "--merge-lora",
        action="store_true",
        help="fold the LoRA into the base weights after loading: a student step then costs a "
        "teacher step (about 9%% faster at full size); not with --teacher-steps",
    )
    parser.add_argument(
        "--guidance-scale",
        type=float,
        help="FLUX: embedded guidance (3.5; a tiny stack: its teacher's); Qwen-Image: the "
        "teacher's CFG (4.0)",
    )
    parser.add_argument(
        "--max-sequence-length",
        type=int,
        help="text tokens of the long encoder (default 512; the tiny FLUX stack: 32)",
    )
    parser.add_argument("--timestep-ratio", type=float, default=1.0, help="last-step ratio")
    parser.add_argument("--shift", type=float, default=RELEASED_SHIFT, help="static time shift")
    return parser


def add_quantize_arguments(parser: argparse.ArgumentParser) -> None:
    """``--quantize SCHEME`` and ``--gguf FILE``: the base transformer's weight quantization."""
    parser.add_argument(
        "--quantize",
        # arcflow.models.quantization.SCHEMES, written out: importing it loads torch before --help
        choices=["none", "int8", "float8", "nf4", "gguf"],
        default="none",
        help="quantize the base transformer's weights (the ArcFlow heads and LoRA stay in "
        "--dtype): int8 (torchao, CPU and CUDA), float8 (torchao, CUDA compute capability "
        ">= 8.9), nf4 (bitsandbytes, CUDA), gguf (the --gguf file, CPU and CUDA)",
    )
    parser.add_argument(
        "--gguf",
        type=Path,
        metavar="FILE",
        help="with --quantize gguf: a GGUF file of the transformer (diffusers or original "
        "parameter names); the rest of the pipeline still comes from --model",
    )


def prompts_file(path: Path, parser: argparse.ArgumentParser) -> list[str]:
    """The prompts of ``--prompts-file`` (one per line, blank lines skipped); a missing or empty
    file is a usage error naming it. Every tool that takes the flag reads it here."""
    if not path.is_file():
        parser.error(f"--prompts-file {path} does not exist")
    lines = path.read_text(encoding="utf-8").splitlines()
    prompts = [line.strip() for line in lines if line.strip()]
    if not prompts:
        parser.error(f"--prompts-file {path} holds no prompt (one per line)")
    return prompts


def read_prompts(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[str]:
    prompts = list(args.prompt)
    if any(not prompt.strip() for prompt in prompts):
        parser.error("--prompt is empty: describe the image to draw")
    if args.prompts_file is not None:
        prompts += prompts_file(args.prompts_file, parser)
    if not prompts:
        parser.error("give at least one --prompt or a --prompts-file")
    return prompts


def image_path(out: Path, index: int, total: int, prompt: str) -> Path:
    """``out/00003_a-red-fox.png`` for a folder; ``out`` or ``out_00003.png`` for a file."""
    if out.suffix.lower() == ".png":
        return out if total == 1 else out.with_name(f"{out.stem}_{index:05d}.png")
    slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:48] or "image"
    return out / f"{index:05d}_{slug}.png"


def free_path(path: Path) -> Path:
    """``path``, or ``<stem>_2.png``, ``<stem>_3.png``, ... when it (or its ``_vs_teacher``
    companion) exists: a new run keeps the images of earlier ones."""

    def used(candidate: Path) -> bool:
        companion = candidate.with_name(f"{candidate.stem}_vs_teacher.png")
        return candidate.exists() or companion.exists()

    number, candidate = 1, path
    while used(candidate):
        number += 1
        candidate = path.with_name(f"{path.stem}_{number}{path.suffix}")
    return candidate


def save_png(image: Image.Image, path: Path, metadata: dict[str, Any]) -> None:
    """PNG with each setting as a text chunk, plus all of them as JSON under ``arcflow``."""
    info = PngInfo()
    for key, value in metadata.items():
        info.add_text(key, str(value))
    info.add_text("arcflow", json.dumps(metadata, sort_keys=True))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, pnginfo=info)


def side_by_side(left: Image.Image, right: Image.Image) -> Image.Image:
    canvas = Image.new("RGB", (left.width + right.width, max(left.height, right.height)))
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width, 0))
    return canvas


# ------------------------------------------------------------------------------ distribution
def init_distributed() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)``; starts the process group under torchrun."""
    import torch
    import torch.distributed as dist

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return 0, 1, 0
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        if torch.cuda.is_available():
            # One GPU per process, known to NCCL before its first collective (the final barrier).
            torch.cuda.set_device(local_rank)
            dist.init_process_group(backend="nccl")
        else:
            dist.init_process_group(backend="gloo")
    return dist.get_rank(), world_size, local_rank


# ------------------------------------------------------------------------------ loading
def add_stack_arguments(
    parser: argparse.ArgumentParser, archs: Iterable[str], student_help: str
) -> None:
    """The flags ``arcflow.evaluation.harness.load_stack`` reads: which base and adapters
    (``--arch``, ``--preset``, ``--model``, ``--adapter``, ``--linear-adapter``, ``--student``),
    how they run (``--device``, ``--dtype``, ``--guidance-scale``) and the image size."""
    parser.add_argument("--arch", choices=sorted(archs), default="flux")
    add_preset_argument(parser)
    parser.add_argument("--model", help="base model folder or Hub id (default: the preset's)")
    parser.add_argument("--adapter", help="ArcFlow adapter (default: the preset's)")
    parser.add_argument(
        "--linear-adapter",
        help="K = 1 baseline adapter (tiny preset: checkpoints/tiny-<arch>-linear)",
    )
    parser.add_argument(
        "--student", action="append", default=[], metavar="NAME=FOLDER", help=student_help
    )
    parser.add_argument("--height", type=int, help="default: the model's (tiny: 64)")
    parser.add_argument("--width", type=int, help="default: the model's (tiny: 64)")
    parser.add_argument("--max-sequence-length", type=int, help="default: as inference_*.py")
    parser.add_argument(
        "--guidance-scale",
        type=float,
        help="teacher guidance (default: released; a tiny stack: its teacher's)",
    )
    parser.add_argument("--device", help="default: cuda if available, else cpu")
    parser.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], default="auto")


# ------------------------------------------------------------------------------ main
def seeded(seed: int, indices: list[int]) -> list[torch.Generator]:
    """One CPU generator per image, seeded ``seed + index``."""
    import torch

    return [torch.Generator().manual_seed(seed + index) for index in indices]


def sample(
    pipe: Any,
    prompt: str,
    seed: int,
    indices: list[int],
    call: dict[str, Any],
    teacher_steps: int | None = None,
) -> list[Image.Image]:
    """One batch of ``prompt``: image ``index`` from its own generator seeded ``seed + index``;
    with ``teacher_steps``, the base teacher's N Euler steps from the same noise instead."""
    batch = dict(call, num_images_per_prompt=len(indices))
    if teacher_steps:
        batch["teacher_steps"] = teacher_steps
    # By keyword: an editing pipeline takes the image first.
    return pipe(prompt=prompt, generator=seeded(seed, indices), **batch).images


def save_sample(
    path: Path,
    image: Image.Image,
    metadata: dict[str, Any],
    teacher: Image.Image | None = None,
    teacher_steps: int | None = None,
) -> list[Path]:
    """The student's PNG at ``path`` and, given the teacher's image, ``<stem>_vs_teacher.png``
    (student | teacher); ``metadata`` holds the settings, prompt and seed of the image, to which
    both files add the student image's height and width."""
    metadata = {**metadata, "height": image.height, "width": image.width}
    save_png(image, path, {**metadata, "sampler": "arcflow-student"})
    if teacher is None:
        return [path]
    compare = path.with_name(f"{path.stem}_vs_teacher.png")
    save_png(
        side_by_side(image, teacher),
        compare,
        {**metadata, "sampler": "student | teacher (left | right)", "teacher_steps": teacher_steps},
    )
    return [path, compare]


@dataclass
class LoadedPipeline:
    """A pipeline loaded as the command line asks, with what every call and PNG shares."""

    pipe: Any
    call: dict[str, Any]  # keyword arguments of each pipeline call
    settings: dict[str, Any]  # recorded in each PNG beside prompt, seed and sampler

    def long_prompt_note(self, prompt: str) -> str | None:
        """One line when ``prompt`` has more tokens than the text encoder reads (the rest is
        cut off without a word from the libraries), else None."""
        arch = self.pipe.student.arch
        limit = arch.prompt_token_limit(self.pipe, self.call["max_sequence_length"])
        (count,) = arch.prompt_token_counts(self.pipe, [prompt])
        if count <= limit:
            return None
        return (
            f"the prompt is {count} tokens long and the model reads only the first {limit}: "
            "the rest is ignored; shorten it"
        )


def write_images(
    loaded: LoadedPipeline,
    args: argparse.Namespace,
    prompts: list[str],
    rank: int = 0,
    world_size: int = 1,
) -> None:
    """Generate and save this rank's prompts (``rank, rank + world_size, ...``), one batch of
    ``--num-images`` per prompt; a prompt longer than the text encoder reads is said first."""
    pipe, call, settings = loaded.pipe, loaded.call, loaded.settings
    total = len(prompts) * args.num_images
    for p in range(rank, len(prompts), world_size):
        prompt = prompts[p]
        note = loaded.long_prompt_note(prompt)
        if note:
            print(f"warning: prompt {p + 1}: {note}", file=sys.stderr)
        indices = [p * args.num_images + k for k in range(args.num_images)]
        images = sample(pipe, prompt, args.seed, indices, call)
        teacher = None
        if args.teacher_steps:
            teacher = sample(pipe, prompt, args.seed, indices, call, args.teacher_steps)
        for k, index in enumerate(indices):
            wanted = image_path(args.out, index, total, prompt)
            path = wanted if args.overwrite else free_path(wanted)
            if path != wanted:
                print(f"{wanted} exists: writing {path.name} beside it (--overwrite replaces)")
            metadata = dict(prompt=prompt, seed=args.seed + index, **settings)
            written = save_sample(
                path, images[k], metadata, teacher[k] if teacher else None, args.teacher_steps
            )
            for file in written:
                print(f"[rank {rank}] wrote {file}" if world_size > 1 else f"wrote {file}")


def check_arguments(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Usage errors of the generation flags (exits through ``parser.error``)."""
    for flag in ("nfe", "num_images", "teacher_steps"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    if args.seed < 0:
        parser.error(f"--seed must be >= 0 (torch seeds are unsigned), got {args.seed}")
    if not args.shift > 0:
        parser.error(f"--shift must be > 0 (the released models use 3.2), got {args.shift}")
    if not 0 < args.timestep_ratio <= 1:
        parser.error(
            f"--timestep-ratio must be in (0, 1] (released: 1.0), got {args.timestep_ratio}"
        )
    if args.guidance_scale is not None and not args.guidance_scale > 0:
        parser.error(f"--guidance-scale must be > 0, got {args.guidance_scale}")
    if args.merge_lora and args.teacher_steps:
        parser.error("--merge-lora removes the teacher that --teacher-steps samples: drop one")
    if args.merge_lora and args.quantize != "none":
        parser.error("--merge-lora needs a float base: drop it, or --quantize")
    check_out(args.out)


def load_from_args(spec: CliSpec, args: argparse.Namespace, local_rank: int = 0) -> LoadedPipeline:
    """Device, dtype, model and adapter as the flags say; LoadError when nothing loads."""
    import torch

    from arcflow.models.quantization import check_scheme
    from arcflow.models.student import resolve_dtype
    from arcflow.models.teacher_source import mismatch_note

    device = args.device or (f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise LoadError(f"--device {device}: no CUDA device is visible here; use --device cpu")
    dtype = args.dtype
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    try:
        check_scheme(args.quantize, device, args.gguf)
    except UserError as error:  # a LoadError: the web demo's start-up reports it as one line too
        raise LoadError(str(error)) from None
    model, adapter = resolve_sources(spec, args)
    check_image_size(model, args.height, args.width)
    source = None if getattr(args, "image", None) is None else open_edit_image(args.image)
    pipe = load_pipeline(
        spec, model, adapter, resolve_dtype(dtype), device, args.offload, args.quantize, args.gguf
    )
    load_loras(pipe, args.lora)
    note = mismatch_note(pipe.student.teacher_source, model, args.lora)
    if note:
        print(note, file=sys.stderr)
    pipe.set_progress_bar_config(disable=True)
    if args.merge_lora:
        pipe.merge_arcflow_lora()

    call: dict[str, Any] = dict(
        num_inference_steps=args.nfe,
        timestep_ratio=args.timestep_ratio,
        shift=args.shift,
        **resolve_call(model, args),
    )
    guidance_scale = call.pop("guidance_scale")
    if source is not None:
        call["image"] = source
        # The edited image has the source's size on the model's grid unless the flags say.
        multiple = pipe.vae_scale_factor * 2
        grid = (source.height // multiple * multiple, source.width // multiple * multiple)
        if min(grid) == 0:
            raise LoadError(f"--image {args.image} is smaller than one {multiple}-pixel token")
        if grid != (source.height, source.width):
            print(
                f"--image {args.image} is {source.width}x{source.height}: edited at "
                f"{grid[1]}x{grid[0]} (sides are multiples of {multiple} for this model)"
            )
        call["height"] = args.height or grid[0]
        call["width"] = args.width or grid[1]
    try:
        pipe.latent_size(call["height"], call["width"])
    except ValueError as error:
        raise UserError(f"--height / --width do not fit {spec.name}: {error}") from None
    if guidance_scale is not None:
        call["guidance_scale"] = guidance_scale
    settings = dict(
        model=model,
        adapter=adapter,
        nfe=args.nfe,
        timestep_ratio=args.timestep_ratio,
        shift=args.shift,
        guidance_scale=guidance_scale,
        max_sequence_length=call["max_sequence_length"],
        dtype=dtype,
        quantize=args.quantize,
        merge_lora=args.merge_lora,
        loras=" ".join(f"{path}:{weight:g}" for path, weight in args.lora),
    )
    if source is not None:
        settings["image"] = str(args.image)
    return LoadedPipeline(pipe, call, settings)


def open_edit_image(path: Path) -> Any:
    """``--image`` as an RGB PIL image; LoadError in one line when it is missing or unreadable."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise LoadError(f"--image {path} does not exist: give the image to edit")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as error:
        raise LoadError(f"--image {path} is not a readable image ({error})") from None


def run(spec: CliSpec, argv: list[str] | None = None) -> int:
    """Parse ``argv``, generate, write the PNGs; returns the exit code (2: nothing loadable)."""
    parser = build_parser(spec)
    args = parser.parse_args(argv)
    if args.image is not None:
        if spec.edit is None:
            parser.error(f"--image: editing is not available for {spec.name} in this version")
        spec = EDIT_SPECS[spec.edit].under(spec.root)
    prompts = read_prompts(args, parser)
    check_arguments(args, parser)
    quiet_libraries()
    import torch.distributed as dist

    rank, world_size, local_rank = init_distributed()
    try:
        loaded = load_from_args(spec, args, local_rank)
    except LoadError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_LOAD_ERROR
    write_images(loaded, args, prompts, rank, world_size)
    if world_size > 1:
        dist.barrier()
        dist.destroy_process_group()
    return 0


def main(spec: CliSpec) -> None:
    sys.exit(run_cli(lambda argv: run(spec, argv)))
