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
and ``checkpoints/tiny-{flux,qwen}-arcflow`` at 64x64.
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

# torch, diffusers and the pipelines load after argument parsing: --help and usage errors are
# instant instead of taking the ~10 s those imports cost.
if TYPE_CHECKING:
    import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
PUBLISHED_REPO = "ymyy307/ArcFlow"
EXIT_LOAD_ERROR = 2


@dataclass(frozen=True)
class CliSpec:
    """What differs between the FLUX and the Qwen-Image command lines."""

    name: str  # shown in messages: "FLUX.1-dev", "Qwen-Image"
    pipeline: str  # class name in arcflow.pipelines
    default_model: str
    default_adapter: str  # "<repo>/<subfolder>" on the Hub
    tiny_model: str  # folders under the repository root
    tiny_adapter: str
    tiny_size: int = 64  # image side of the tiny stacks
    # The tiny FLUX teacher was trained on T5 padded to 32 tokens and is sampled at its own
    # embedded guidance (arcflow/data/tiny_stack.py: FLUX_MAX_SEQUENCE_LENGTH, FLUX_GUIDANCE_SCALE).
    tiny_max_sequence_length: int = 512
    tiny_guidance_scale: float | None = None  # None: the adapter's default


FLUX = CliSpec(
    name="FLUX.1-dev",
    pipeline="ArcFluxPipeline",
    default_model="black-forest-labs/FLUX.1-dev",
    default_adapter=f"{PUBLISHED_REPO}/arcflow-flux-2steps",
    tiny_model="checkpoints/tiny-flux",
    tiny_adapter="checkpoints/tiny-flux-arcflow",
    tiny_max_sequence_length=32,
    tiny_guidance_scale=7.0,
)
QWEN_IMAGE = CliSpec(
    name="Qwen-Image",
    pipeline="ArcQwenImagePipeline",
    default_model="Qwen/Qwen-Image",
    default_adapter=f"{PUBLISHED_REPO}/arcflow-qwen-2steps",
    tiny_model="checkpoints/tiny-qwen",
    tiny_adapter="checkpoints/tiny-qwen-arcflow",
)


class LoadError(UserError):
    """Something named on the command line could not be loaded (reported without traceback)."""


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
            pass  # a colon inside the path itself
    return value, 1.0


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


def load_loras(pipe: Any, loras: list[tuple[str, float]]) -> None:
    """Load each ``(path, weight)`` of ``--lora`` into ``pipe`` (adapters ``lora0``, ``lora1``,
    ...); LoadError naming the one that failed."""
    for index, (source, weight) in enumerate(loras):
        path = Path(source).expanduser()
        where, options = source, {}
        if path.is_file():  # diffusers takes a folder (or Hub repo) and the file's name apart
            where, options = str(path.parent), dict(weight_name=path.name)
        try:
            pipe.load_lora_weights(where, adapter_name=f"lora{index}", weight=weight, **options)
        except Exception as error:  # a wrong path, file format or base model alike
            raise LoadError(
                f"could not load the LoRA '{source}' ({_reason(error)}).\nHint: --lora takes a "
                "diffusers LoRA folder or .safetensors file trained for this --model, then "
                "optionally ':WEIGHT'."
            ) from error


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
    parser.add_argument("--nfe", type=int, default=2, help="student evaluations per image")
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
    parser.add_argument(
        "--preset",
        choices=["tiny"],
        help=f"tiny: the shipped CPU-sized stack ({spec.tiny_model} + {spec.tiny_adapter})",
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
        help="FLUX: embedded guidance (3.5; the tiny preset: its teacher's); Qwen-Image: the "
        "teacher's CFG (4.0)",
    )
    parser.add_argument(
        "--max-sequence-length",
        type=int,
        help="text tokens of the long encoder (default 512; the tiny FLUX preset: 32)",
    )
    parser.add_argument("--timestep-ratio", type=float, default=1.0, help="last-step ratio")
    parser.add_argument("--shift", type=float, default=3.2, help="static time shift")
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


def read_prompts(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[str]:
    prompts = list(args.prompt)
    if args.prompts_file is not None:
        if not args.prompts_file.is_file():
            parser.error(f"--prompts-file {args.prompts_file} does not exist")
        lines = args.prompts_file.read_text(encoding="utf-8").splitlines()
        prompts += [line.strip() for line in lines if line.strip()]
    if not prompts:
        parser.error("give at least one --prompt or a --prompts-file")
    return prompts


def split_adapter(adapter: str) -> tuple[str, str | None]:
    """A local folder as is; ``owner/repo/sub/folder`` -> (``owner/repo``, ``sub/folder``)."""
    if Path(adapter).expanduser().is_dir():
        return adapter, None
    parts = adapter.strip("/").split("/")
    if len(parts) > 2:
        return "/".join(parts[:2]), "/".join(parts[2:])
    return adapter, None


def image_path(out: Path, index: int, total: int, prompt: str) -> Path:
    """``out/00003_a-red-fox.png`` for a folder; ``out`` or ``out_00003.png`` for a file."""
    if out.suffix.lower() == ".png":
        return out if total == 1 else out.with_name(f"{out.stem}_{index:05d}.png")
    slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:48] or "image"
    return out / f"{index:05d}_{slug}.png"


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
    parser.add_argument("--preset", choices=["tiny"], help="the shipped tiny-world models")
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
        help="teacher guidance (default: released; the tiny preset: its teacher's)",
    )
    parser.add_argument("--device", help="default: cuda if available, else cpu")
    parser.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], default="auto")


def resolve_sources(spec: CliSpec, args: argparse.Namespace) -> tuple[str, str]:
    """Model and adapter after the preset; a missing tiny stack is a LoadError."""
    model, adapter = args.model, args.adapter
    if args.preset == "tiny":
        for given, default, flag in (
            (model, spec.tiny_model, "--model"),
            (adapter, spec.tiny_adapter, "--adapter"),
        ):
            if given is None and not (REPO_ROOT / default).is_dir():
                raise LoadError(
                    f"the tiny preset needs {REPO_ROOT / default}, which does not exist yet. "
                    "Build the tiny world first (python tools/build_tiny_world.py), or pass "
                    f"{flag} with a local folder."
                )
        model = model or str(REPO_ROOT / spec.tiny_model)
        adapter = adapter or str(REPO_ROOT / spec.tiny_adapter)
    return model or spec.default_model, adapter or spec.default_adapter


def resolve_guidance(spec: CliSpec, args: argparse.Namespace) -> float | None:
    """``--guidance-scale``, else the tiny stack's own with the tiny preset, else None (the
    adapter's default: FLUX 3.5 embedded, Qwen-Image true CFG 4.0)."""
    if args.guidance_scale is not None:
        return args.guidance_scale
    return spec.tiny_guidance_scale if args.preset == "tiny" else None


def image_size_multiple(model: str) -> int:
    """What image sides must be multiples of: the VAE's downsampling x 2 (2x2 latent pixels per
    token). Read from a local model's ``vae/config.json``; 16 (the released models') otherwise."""
    config_path = Path(model).expanduser() / "vae" / "config.json"
    if not config_path.is_file():
        return 16
    config = json.loads(config_path.read_text())
    if "temperal_downsample" in config:  # Qwen-Image's VAE: one x2 per entry, then x2 once more
        return 2 ** len(config["temperal_downsample"]) * 2
    return 2 ** (len(config["block_out_channels"]) - 1) * 2


def check_image_size(model: str, height: int | None, width: int | None) -> None:
    """Fail before any model loads (UserError) on a side the pipeline would refuse after loading."""
    multiple = image_size_multiple(model)
    for flag, value in (("--height", height), ("--width", width)):
        if value is not None and (value <= 0 or value % multiple):
            raise UserError(
                f"{flag} must be a positive multiple of {multiple} for this model (its VAE's "
                f"downsampling x 2x2 token packing), got {value}"
            )


def _reason(error: BaseException, limit: int = 400) -> str:
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    first = lines[0] if lines else "(no message)"
    return f"{type(error).__name__}: {first[:limit]}{'...' if len(first) > limit else ''}"


def quiet_libraries() -> None:
    """Only errors from diffusers, transformers and the Hub client: a failed load should read as
    one message, not pages of retries, warnings and loading bars."""
    import diffusers
    import huggingface_hub
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    huggingface_hub.utils.logging.set_verbosity_error()


def load_pipeline(
    spec: CliSpec,
    model: str,
    adapter: str,
    dtype: torch.dtype,
    device: str,
    offload: bool,
    quantize: str = "none",
    gguf: Path | None = None,
) -> Any:
    """The pipeline with its adapter, on ``device`` (or offloaded to it), its base transformer
    quantized with ``quantize`` (:mod:`arcflow.models.quantization`); LoadError on failure."""
    from arcflow import pipelines
    from arcflow.models.arch import get_arch
    from arcflow.models.quantization import load_quantized_transformer

    pipeline_cls = getattr(pipelines, spec.pipeline)
    if not Path(model).expanduser().is_dir() and (
        model.startswith(("/", ".", "~")) or model.count("/") != 1
    ):
        raise LoadError(
            f"--model '{model}' is neither a local folder nor a Hub id ('owner/name'): point "
            "--model at a local diffusers pipeline folder (with model_index.json)."
        )
    local = Path(model).expanduser().is_dir()
    components = {}
    if quantize != "none":
        transformer_cls = get_arch(pipeline_cls.arch).transformer_cls
        try:
            components["transformer"] = load_quantized_transformer(
                transformer_cls, model, quantize, dtype, gguf, local_files_only=local
            )
        except Exception as error:  # a bad file, or one of another model, reads as one line
            raise LoadError(
                f"could not load the {spec.name} transformer with --quantize {quantize} "
                f"({_reason(error)}).\nHint: --gguf must be a GGUF file of this --model's "
                "transformer; the other schemes quantize --model's own weights."
            ) from error
    try:
        pipe = pipeline_cls.from_pretrained(
            model, dtype=dtype, local_files_only=local, **components
        )
    except Exception as error:  # from_pretrained raises many types for one cause: a bad source
        where = "check that" if Path(model).expanduser().is_dir() else "without network access,"
        raise LoadError(
            f"could not load the {spec.name} base model '{model}' ({_reason(error)}).\n"
            f"Hint: {where} --model must be a local diffusers pipeline folder (model_index.json, "
            "transformer/, vae/, text encoders and tokenizers)."
        ) from error
    repo, subfolder = split_adapter(adapter)
    try:
        pipe.load_arcflow_adapter(repo, subfolder=subfolder)
    except Exception as error:  # adapter download, format and base-mismatch errors alike
        hint = (
            "check that the adapter was trained for this --model"
            if Path(adapter).expanduser().is_dir()
            else "without network access, --adapter must be a local adapter folder (config.json "
            "and diffusion_pytorch_model.safetensors)"
        )
        raise LoadError(
            f"could not load the ArcFlow adapter '{adapter}' ({_reason(error)}).\nHint: {hint}."
        ) from error
    if offload:
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    return pipe


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
    return pipe(prompt, generator=seeded(seed, indices), **batch).images


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


def write_images(
    pipe: Any,
    args: argparse.Namespace,
    prompts: list[str],
    call: dict[str, Any],
    settings: dict[str, Any],
    rank: int = 0,
    world_size: int = 1,
) -> None:
    """Generate and save this rank's prompts (``rank, rank + world_size, ...``), one batch of
    ``--num-images`` per prompt."""
    total = len(prompts) * args.num_images
    for p in range(rank, len(prompts), world_size):
        prompt = prompts[p]
        indices = [p * args.num_images + k for k in range(args.num_images)]
        images = sample(pipe, prompt, args.seed, indices, call)
        teacher = None
        if args.teacher_steps:
            teacher = sample(pipe, prompt, args.seed, indices, call, args.teacher_steps)
        for k, index in enumerate(indices):
            path = image_path(args.out, index, total, prompt)
            metadata = dict(prompt=prompt, seed=args.seed + index, **settings)
            save_sample(
                path, images[k], metadata, teacher[k] if teacher else None, args.teacher_steps
            )
            print(f"[rank {rank}] wrote {path}" if world_size > 1 else f"wrote {path}")


@dataclass
class LoadedPipeline:
    """A pipeline loaded as the command line asks, with what every call and PNG shares."""

    pipe: Any
    call: dict[str, Any]  # keyword arguments of each pipeline call
    settings: dict[str, Any]  # recorded in each PNG beside prompt, seed and sampler


def check_arguments(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Usage errors of the generation flags (exits through ``parser.error``)."""
    for flag in ("nfe", "num_images", "teacher_steps"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
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

    device = args.device or (f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    dtype = args.dtype
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    try:
        check_scheme(args.quantize, device, args.gguf)
    except UserError as error:  # a LoadError: the web demo's start-up reports it as one line too
        raise LoadError(str(error)) from None
    model, adapter = resolve_sources(spec, args)
    check_image_size(model, args.height, args.width)
    pipe = load_pipeline(
        spec, model, adapter, resolve_dtype(dtype), device, args.offload, args.quantize, args.gguf
    )
    load_loras(pipe, args.lora)
    pipe.set_progress_bar_config(disable=True)
    if args.merge_lora:
        pipe.merge_arcflow_lora()

    tiny = args.preset == "tiny"
    call: dict[str, Any] = dict(
        num_inference_steps=args.nfe,
        timestep_ratio=args.timestep_ratio,
        shift=args.shift,
        height=args.height or (spec.tiny_size if tiny else None),
        width=args.width or (spec.tiny_size if tiny else None),
        max_sequence_length=args.max_sequence_length
        or (spec.tiny_max_sequence_length if tiny else 512),
    )
    try:
        pipe.latent_size(call["height"], call["width"])
    except ValueError as error:
        raise UserError(f"--height / --width do not fit {spec.name}: {error}") from None
    guidance_scale = resolve_guidance(spec, args)
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
    return LoadedPipeline(pipe, call, settings)


def run(spec: CliSpec, argv: list[str] | None = None) -> int:
    """Parse ``argv``, generate, write the PNGs; returns the exit code (2: nothing loadable)."""
    parser = build_parser(spec)
    args = parser.parse_args(argv)
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
    write_images(loaded.pipe, args, prompts, loaded.call, loaded.settings, rank, world_size)
    if world_size > 1:
        dist.barrier()
        dist.destroy_process_group()
    return 0


def main(spec: CliSpec) -> None:
    sys.exit(run_cli(lambda argv: run(spec, argv)))
