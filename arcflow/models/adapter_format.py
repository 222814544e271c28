"""The published ArcFlow adapter format (docs/method.md, Adapter format), both ways.

A folder (or a Hub repository subfolder, e.g. ``ymyy307/ArcFlow``) with

- ``config.json``: ``_class_name`` (``ArcFluxTransformer2DModel`` or
  ``ArcQwenImageTransformer2DModel``), ``num_gaussians`` (K), ``logweights_channels`` (p*p = 4)
  and the base constructor arguments;
- ``diffusion_pytorch_model.safetensors`` (float16): ``proj_out_means.*``,
  ``proj_out_logweights.*``, ``proj_out_loggamma.*``, ``norm_out.linear.*`` and
  ``<module path>.lora_{A,B}.weight`` (alpha = rank), header metadata
  ``policy_config = '{"type": "ArcFlow"}'``.

Loading = base transformer from its own repository + this folder:
``student = load_arcflow_adapter(base_transformer, path)`` returns a ready
:class:`~arcflow.models.student.ArcFlowStudent` (K and the LoRA rank read from the tensors), so
sampling, evaluation and further training all use one class. Every tensor in the file must be used
and fit; anything else is an error naming the key.

The internal <-> published names live in :data:`PUBLISHED_MODULE_NAMES` and the two LoRA patterns
below, nowhere else.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import diffusers
import torch
from diffusers import ModelMixin
from huggingface_hub import hf_hub_download
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from arcflow.errors import SourceError
from arcflow.models.arch import arch_for_published_class
from arcflow.models.packing import PACK
from arcflow.models.state_match import listing, match_state
from arcflow.models.student import LORA_ADAPTER_NAME, ArcFlowStudent
from arcflow.models.teacher_source import read_teacher_record, write_teacher_record

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
POLICY_METADATA = {"policy_config": json.dumps({"type": "ArcFlow"})}

# Internal module (relative to the transformer) -> published module name.
PUBLISHED_MODULE_NAMES = {
    "proj_out.means": "proj_out_means",
    "proj_out.logits": "proj_out_logweights",
    "proj_out.log_rates": "proj_out_loggamma",
    "norm_out.linear.student": "norm_out.linear",
}
# peft keeps an adapter name in its keys (training's, or the pipelines' "arcflow"); the published
# files do not.
_LORA_INTERNAL = re.compile(r"(?P<path>.+)\.(?P<ab>lora_[AB])\.(?P<adapter>[^.]+)\.weight")
_LORA_PUBLISHED = re.compile(r"(?P<path>.+)\.(?P<ab>lora_[AB])\.weight")


def to_published_name(name: str) -> str:
    """Transformer-relative internal parameter name -> published key."""
    lora = _LORA_INTERNAL.fullmatch(name)
    if lora:
        return f"{lora['path']}.{lora['ab']}.weight"
    module, _, leaf = name.rpartition(".")
    if module in PUBLISHED_MODULE_NAMES:
        return f"{PUBLISHED_MODULE_NAMES[module]}.{leaf}"
    raise KeyError(f"{name!r} has no name in the published ArcFlow format")


# ---------------------------------------------------------------------------------------- save
@torch.no_grad()
def save_arcflow_adapter(student: ArcFlowStudent, out_dir: str | Path) -> Path:
    """Write ``config.json`` + ``diffusion_pytorch_model.safetensors`` (float16) to ``out_dir``.

    peft's LoRA scale ``alpha / rank`` is folded into ``lora_B`` so the file holds alpha = rank.
    Returns the folder.
    """
    out_dir = Path(out_dir)
    lora_scales = {
        path: layer.scaling[student.adapter_name] for path, layer in student.lora_layers().items()
    }
    tensors: dict[str, torch.Tensor] = {}
    for name, param in student.trainable_named_parameters():
        internal = name.removeprefix("transformer.")
        key = to_published_name(internal)
        if param.is_meta:
            raise ValueError(f"{name} is on the meta device: load weights before saving")
        value = param.detach().float()
        lora = _LORA_INTERNAL.fullmatch(internal)
        if lora and lora["ab"] == "lora_B":
            value = value * lora_scales[lora["path"]]
        half = value.half()
        if not torch.isfinite(half).all():
            raise ValueError(f"{key} does not fit in float16 (|max| = {value.abs().max():.3g})")
        tensors[key] = half.cpu().contiguous()

    transformer = student.transformer
    config = {
        "_class_name": student.arch.published_class_name,
        "_diffusers_version": diffusers.__version__,
        "num_gaussians": student.num_components,
        "logweights_channels": student.patch_size**2,
        **student.arch.published_config(transformer),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    save_file(tensors, out_dir / WEIGHTS_NAME, metadata=POLICY_METADATA)
    give_default_permissions(out_dir / WEIGHTS_NAME)
    write_teacher_record(student.teacher_source, out_dir)
    return out_dir


def give_default_permissions(path: Path) -> None:
    """The mode a plainly created file gets (0644 under the usual umask 022): safetensors writes
    its files readable by their owner only, which would hide a shared checkpoint or export from
    other users."""
    umask = os.umask(0)
    os.umask(umask)
    path.chmod(0o666 & ~umask)


# ---------------------------------------------------------------------------------------- load
def _adapter_files(path_or_repo: str | Path, subfolder: str | None) -> tuple[Path, Path]:
    """Local folder, or download ``config.json`` and the weights from the Hub."""
    root = Path(path_or_repo).expanduser()
    if root.is_dir():
        folder = root / subfolder if subfolder else root
        missing = [name for name in (CONFIG_NAME, WEIGHTS_NAME) if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{folder} is not an ArcFlow adapter folder: missing {missing}")
        return folder / CONFIG_NAME, folder / WEIGHTS_NAME
    where = f"{path_or_repo}/{subfolder}" if subfolder else str(path_or_repo)
    try:
        config, weights = (
            Path(hf_hub_download(str(path_or_repo), name, subfolder=subfolder))
            for name in (CONFIG_NAME, WEIGHTS_NAME)
        )
    except (OSError, ValueError) as error:
        raise SourceError(
            f"could not get the ArcFlow adapter '{where}': it is not a local folder and the "
            f"Hugging Face Hub did not provide {CONFIG_NAME} and {WEIGHTS_NAME} ({error}). "
            "Without network access, download that folder elsewhere and pass its local path."
        ) from error
    return config, weights


def _lora_rank_and_targets(tensors: dict[str, torch.Tensor]) -> tuple[int, list[str]]:
    """Rank (``lora_A`` rows, equal for all modules) and the adapted module paths."""
    ranks: dict[str, int] = {}
    for key, value in tensors.items():
        lora = _LORA_PUBLISHED.fullmatch(key)
        if lora and lora["ab"] == "lora_A":
            ranks[key] = value.shape[0]
    if not ranks:
        return 0, []
    first_key, rank = next(iter(ranks.items()))
    for key, value in ranks.items():
        if value != rank:
            raise ValueError(
                f"LoRA ranks differ: {key} has rank {value}, {first_key} has {rank}; the format "
                "has one rank (alpha = rank)"
            )
    return rank, sorted(key.removesuffix(".lora_A.weight") for key in ranks)


def load_arcflow_adapter(
    transformer: ModelMixin,
    path_or_repo: str | Path,
    subfolder: str | None = None,
    guidance_scale: float | None = None,
    adapter_name: str = LORA_ADAPTER_NAME,
) -> ArcFlowStudent:
    """Turn a plain base ``transformer`` into the student stored in a published-format folder.

    Args:
        transformer: the base FLUX.1-dev / Qwen-Image transformer (modified in place).
        path_or_repo: local folder or Hub repository id (e.g. ``"ymyy307/ArcFlow"``).
        subfolder: folder inside it (one per released model).
        guidance_scale: as in :class:`ArcFlowStudent` (None: the released defaults).
        adapter_name: the peft name of its LoRA (``student.adapter_name``).
    Returns:
        the :class:`ArcFlowStudent` in eval mode, on the transformer's device and dtype.
    """
    config_path, weights_path = _adapter_files(path_or_repo, subfolder)
    config = json.loads(config_path.read_text())
    absent = [
        key for key in ("_class_name", "num_gaussians", "logweights_channels") if key not in config
    ]
    if absent:
        raise KeyError(f"{config_path} lacks {absent}: not an ArcFlow adapter config")
    arch = arch_for_published_class(config["_class_name"])
    arch.check_transformer(transformer)
    arch.check_published_config(config, transformer)
    if config.get("logweights_channels") != PACK * PACK:
        raise ValueError(
            f"config.json logweights_channels={config.get('logweights_channels')!r}; tokens of "
            f"{PACK}x{PACK} latent pixels need {PACK * PACK}"
        )
    with safe_open(weights_path, framework="pt") as handle:
        metadata = handle.metadata() or {}
    # Other policies share the container (pi-Flow's GMFlow adapters): refuse them by name.
    policy = json.loads(metadata.get("policy_config", '{"type": "ArcFlow"}')).get("type")
    if policy != "ArcFlow":
        raise ValueError(
            f"{weights_path} holds a {policy!r} policy (metadata policy_config), not ArcFlow"
        )
    tensors = load_file(weights_path)

    rank, targets = _lora_rank_and_targets(tensors)
    modules = dict(transformer.named_modules())
    for path in targets:
        if not isinstance(modules.get(path), nn.Linear):
            raise KeyError(
                f"adapter key '{path}.lora_A.weight' targets '{path}', which is not a Linear "
                f"layer of the base {type(transformer).__name__}"
            )
    student = ArcFlowStudent(
        transformer,
        arch,
        num_components=config["num_gaussians"],
        lora_rank=rank,
        lora_alpha=rank,
        lora_dropout=0.0,
        lora_targets=targets or None,
        guidance_scale=guidance_scale,
        mean_bias_noise_std=0.0,
        adapter_name=adapter_name,
    )
    if student.num_components == 1:
        # The published classes always hold a (0-row) log-gamma head; K = 1 has none here.
        for leaf in ("weight", "bias"):
            key = f"{PUBLISHED_MODULE_NAMES['proj_out.log_rates']}.{leaf}"
            if key in tensors and tensors[key].shape[0] == 0:
                del tensors[key]

    params = {
        to_published_name(name.removeprefix("transformer.")): param
        for name, param in student.trainable_named_parameters()
    }
    match = match_state(params, tensors, "adapter", "student")
    if match.unexpected:
        raise KeyError(f"adapter keys not used by the {arch.name} student: {match.unexpected}")
    if match.missing:
        raise KeyError(f"adapter is missing keys: {match.missing}")
    if match.mismatched:
        raise ValueError(
            f"adapter shape mismatch (num_gaussians={config['num_gaussians']}): "
            + listing(match.mismatched)
        )
    with torch.no_grad():
        for key, param in params.items():
            param.copy_(tensors[key])
    student.teacher_source = read_teacher_record(config_path.parent)
    return student.eval()
