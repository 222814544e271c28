"""Loading a pipeline as the command lines ask: which base model and ArcFlow adapter (a preset, a
local folder or a Hub id), the model folder's own sampling defaults, further LoRAs; every failure
is one :class:`LoadError` line. Shared by ``inference_*.py``, the web demo and the evaluation
tools, without their argument parsing."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arcflow.errors import UserError
from arcflow.released import RELEASED_MAX_SEQUENCE_LENGTH

if TYPE_CHECKING:
    import torch

PUBLISHED_REPO = "ymyy307/ArcFlow"
# A model folder may carry the defaults of its pipeline calls (the tiny stacks do: 64x64 images,
# and for FLUX the T5 length and embedded guidance its teacher was trained with).
SAMPLING_DEFAULTS_FILE = "sampling_defaults.json"
SAMPLING_KEYS = ("height", "width", "max_sequence_length", "guidance_scale")


@dataclass(frozen=True)
class Preset:
    """What ``--preset NAME`` stands for: local folders per architecture (relative ones under the
    entry script's folder, see :meth:`CliSpec.under`), registered by whoever ships them
    (:func:`register_preset`; the tiny world's ``tiny`` is in ``arcflow.tinyworld.presets``)."""

    name: str
    help: str  # one line for --help
    missing_hint: str  # what to do when a folder is missing, e.g. how to build it
    models: Mapping[str, str]  # arch -> base model folder
    adapters: Mapping[str, str]  # arch -> ArcFlow adapter folder
    linear_adapters: Mapping[str, str] = field(default_factory=dict)  # arch -> K = 1 baseline


# The presets the command lines offer; entry scripts import the modules that register them.
PRESETS: dict[str, Preset] = {}


def register_preset(preset: Preset) -> Preset:
    PRESETS[preset.name] = preset
    return preset


@dataclass(frozen=True)
class CliSpec:
    """What differs between the FLUX and the Qwen-Image command lines."""

    name: str  # shown in messages: "FLUX.1-dev", "Qwen-Image"
    arch: str  # "flux", "qwen_image": which folders of a preset
    pipeline: str  # class name in arcflow.pipelines
    default_model: str
    default_adapter: str | None  # "<repo>/<subfolder>" on the Hub; None: none is published
    root: str = "."  # the folder a preset's relative folders are under
    edit: str | None = None  # the key in EDIT_SPECS of this family's editing model (``--image``)

    def under(self, root: str | Path) -> CliSpec:
        """This spec with presets' folders under ``root`` (an entry script's folder, so that a
        preset works from any current folder)."""
        return replace(self, root=str(root))

    def preset_folder(self, preset: str, kind: str = "models") -> str:
        """The absolute folder ``kind`` (``models``, ``adapters``, ``linear_adapters``) of
        ``preset`` for this architecture."""
        if preset not in PRESETS:
            raise LoadError(f"no preset named {preset!r}; known: {sorted(PRESETS)}")
        folders = getattr(PRESETS[preset], kind)
        if self.arch not in folders:
            raise LoadError(f"the {preset} preset has no {kind} folder for {self.name}")
        return str((Path(self.root) / folders[self.arch]).resolve())


FLUX = CliSpec(
    name="FLUX.1-dev",
    arch="flux",
    pipeline="ArcFluxPipeline",
    default_model="black-forest-labs/FLUX.1-dev",
    default_adapter=f"{PUBLISHED_REPO}/arcflow-flux-2steps",
    edit="flux_kontext",
)
FLUX_KONTEXT = CliSpec(
    name="FLUX.1 Kontext",
    arch="flux_kontext",
    pipeline="ArcFluxKontextPipeline",
    default_model="black-forest-labs/FLUX.1-Kontext-dev",
    default_adapter=None,
)
QWEN_IMAGE = CliSpec(
    name="Qwen-Image",
    arch="qwen_image",
    pipeline="ArcQwenImagePipeline",
    default_model="Qwen/Qwen-Image",
    default_adapter=f"{PUBLISHED_REPO}/arcflow-qwen-2steps",
)


SPECS = {"flux": FLUX, "qwen_image": QWEN_IMAGE}
# The editing models, reached through their family's command line with --image.
EDIT_SPECS = {"flux_kontext": FLUX_KONTEXT}


def specs_under(root: str | Path) -> dict[str, CliSpec]:
    """:data:`SPECS` with presets' folders under ``root`` (see :meth:`CliSpec.under`)."""
    return {arch: spec.under(root) for arch, spec in SPECS.items()}


class LoadError(UserError):
    """Something named on the command line could not be loaded (reported without traceback)."""


def split_adapter(adapter: str) -> tuple[str, str | None]:
    """A local folder as is; ``owner/repo/sub/folder`` -> (``owner/repo``, ``sub/folder``)."""
    if Path(adapter).expanduser().is_dir():
        return adapter, None
    parts = adapter.strip("/").split("/")
    if len(parts) > 2:
        return "/".join(parts[:2]), "/".join(parts[2:])
    return adapter, None


# File names of weights (as --lora and --adapter may name them), never Hub ids.
WEIGHT_SUFFIXES = (".safetensors", ".bin")


def looks_local(source: str) -> bool:
    """Whether ``source`` names a local path rather than a Hub id (``owner/name[/subfolder]``):
    absolute or relative with ``./`` / ``../`` / ``~``, or a weights file's name."""
    return source.startswith(("/", "./", "../", "~")) or source.endswith(WEIGHT_SUFFIXES)


def check_local_source(source: str, flag: str) -> None:
    """A local path that does not exist is a LoadError at once (the Hub would be asked, and
    time out offline, for what can only be a typo)."""
    if looks_local(source) and not Path(source).expanduser().exists():
        raise LoadError(f"{flag} {source}: no such file or folder")


def resolve_sources(spec: CliSpec, args: argparse.Namespace) -> tuple[str, str]:
    """Model and adapter after the preset; a missing tiny stack or local path is a LoadError."""
    model, adapter = args.model, args.adapter
    if args.preset is not None:
        folders = []
        for given, kind, flag in ((model, "models", "--model"), (adapter, "adapters", "--adapter")):
            if given is None:
                given = spec.preset_folder(args.preset, kind)
                if not Path(given).is_dir():
                    raise LoadError(
                        f"the {args.preset} preset needs {given}, which does not exist. "
                        f"{PRESETS[args.preset].missing_hint}, or pass {flag} with a local folder."
                    )
            folders.append(given)
        model, adapter = folders
    for given, flag in ((model, "--model"), (adapter, "--adapter")):
        if given is not None:
            check_local_source(given, flag)
    adapter = adapter or spec.default_adapter
    if adapter is None:
        raise LoadError(
            f"no ArcFlow adapter of {spec.name} is published: pass --adapter with a local export "
            "of your distillation (docs/editing.md)"
        )
    return model or spec.default_model, adapter


def sampling_defaults(model: str) -> dict[str, Any]:
    """The pipeline-call defaults a local model folder carries in ``sampling_defaults.json``:
    a tiny stack's image size, text length and guidance (:data:`SAMPLING_KEYS`). ``{}`` for a
    Hub id or a folder without the file."""
    path = Path(model).expanduser() / SAMPLING_DEFAULTS_FILE
    if not path.is_file():
        return {}
    try:
        defaults = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise LoadError(f"{path} is not valid JSON ({error}): fix or delete it") from None
    unknown = sorted(set(defaults) - set(SAMPLING_KEYS))
    if not isinstance(defaults, dict) or unknown:
        raise LoadError(f"{path} may only set {list(SAMPLING_KEYS)}; it has {unknown or defaults}")
    return defaults


def fill_sampling(given: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """Pipeline-call settings (:data:`SAMPLING_KEYS`): each given value, else the model folder's
    sampling default, else the pipeline's (None; 512 text tokens; guidance None is the adapter's
    default: FLUX 3.5 embedded, Qwen-Image true CFG 4.0). The command lines and the pipelines'
    ``__call__`` both resolve through it."""
    call = {key: defaults.get(key) if value is None else value for key, value in given.items()}
    if "max_sequence_length" in call:
        call["max_sequence_length"] = call["max_sequence_length"] or RELEASED_MAX_SEQUENCE_LENGTH
    return call


def resolve_call(model: str, args: argparse.Namespace) -> dict[str, Any]:
    """``height``, ``width``, ``max_sequence_length`` and ``guidance_scale`` of each pipeline
    call: the flag when given, else as :func:`fill_sampling` says."""
    given = {key: getattr(args, key) for key in SAMPLING_KEYS}
    return fill_sampling(given, sampling_defaults(model))


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


def load_measured_pipeline(
    spec: CliSpec, model: str | None, adapter: str | None, dtype: torch.dtype, device: str
) -> tuple[Any, int, int]:
    """A pipeline for a measuring tool, libraries quiet and nothing offloaded; ``model`` /
    ``adapter`` default to the tiny preset's folders. Returns it with the image side (the model
    folder's sampling default, else 1024) and text length (else 512) of its calls."""
    quiet_libraries()
    model = model or spec.preset_folder("tiny", "models")
    adapter = adapter or spec.preset_folder("tiny", "adapters")
    pipe = load_pipeline(spec, model, adapter, dtype, device, offload=False)
    defaults = sampling_defaults(model)
    size = defaults.get("height", 1024)
    return pipe, size, defaults.get("max_sequence_length", RELEASED_MAX_SEQUENCE_LENGTH)


def _holds_lora(path: Path) -> bool:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as weights:
            keys = list(weights.keys())
    except Exception as error:  # not a safetensors file at all
        raise LoadError(f"--lora {path} is not a readable .safetensors file ({error})") from None
    return any("lora" in key.lower() for key in keys)


def load_loras(pipe: Any, loras: list[tuple[str, float]]) -> None:
    """Load each ``(path, weight)`` of ``--lora`` into ``pipe`` (adapters ``lora0``, ``lora1``,
    ...); LoadError naming the one that failed."""
    for index, (source, weight) in enumerate(loras):
        check_local_source(source, "--lora")
        path = Path(source).expanduser()
        where, options = source, {}
        if path.is_file():  # diffusers takes a folder (or Hub repo) and the file's name apart
            where, options = str(path.parent), dict(weight_name=path.name)
            if path.suffix == ".safetensors" and not _holds_lora(path):
                raise LoadError(
                    f"--lora {source} holds no LoRA weights (no lora_A / lora_B / lora_down / "
                    "lora_up tensors): --lora takes a LoRA trained for this --model"
                )
        try:
            pipe.load_lora_weights(where, adapter_name=f"lora{index}", weight=weight, **options)
        except Exception as error:  # a wrong path, file format or base model alike
            raise LoadError(
                f"could not load the LoRA '{source}' ({_reason(error)}).\nHint: --lora takes a "
                "diffusers LoRA folder or .safetensors file trained for this --model, then "
                "optionally ':WEIGHT'."
            ) from error
