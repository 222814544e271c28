"""Training checkpoint -> the published ArcFlow adapter format (docs/method.md, Adapter format).

The student is built from the run's config on the META device (no base weights are read: the
format holds only the trainable tensors), the checkpoint's tensors are assigned in place of the
meta ones, and :func:`save_arcflow_adapter` writes the folder. A checkpoint from another config
(other K, rank, targets or base size) fails with the offending keys named.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from arcflow.errors import UserError, run_cli, writable_dir
from arcflow.models.state_match import listing, match_state

# torch, mmengine and diffusers load on use: --help and usage errors stay instant.
if TYPE_CHECKING:
    import torch

    from arcflow.models.student import ArcFlowStudent

STUDENT_PREFIX = "student."  # the distiller's attribute: checkpoint names are student.<name>
EMA_FILE = "ema.safetensors"
RAW_FILE = "trainable.safetensors"


def resolve_checkpoint(ckpt: str | Path | None, checkpoint_dir: str | Path) -> Path:
    """A complete ``iter_XXXXXX`` folder (its files match its manifest): ``ckpt`` itself, the
    newest complete one of ``ckpt`` when it is a run folder, or of the config's
    ``checkpoint_dir`` when ``ckpt`` is None. Broken newer ones are named on stderr and skipped."""
    from arcflow.engine.checkpoint_files import find_checkpoint, verify_checkpoint

    root = Path(checkpoint_dir if ckpt is None else ckpt)
    if (root / RAW_FILE).is_file() or (root / EMA_FILE).is_file():
        return verify_checkpoint(root)
    latest = find_checkpoint(root, lambda line: print(f"warning: {line}", file=sys.stderr))
    if latest is None:
        where = "the config's checkpoint_dir " if ckpt is None else ""
        raise UserError(
            f"no checkpoint in {where}{root}: expected {RAW_FILE} there or iter_XXXXXX/ folders "
            "under it; pass --ckpt"
        )
    return latest


def assign_trainable(student: ArcFlowStudent, tensors: dict[str, torch.Tensor]) -> None:
    """Put checkpoint tensors (``student.``-prefixed names) in place of the student's trainable
    parameters, which may live on the meta device. Every key must match in name and shape."""
    params = dict(student.trainable_named_parameters())
    foreign = sorted(name for name in tensors if not name.startswith(STUDENT_PREFIX))
    stripped = {
        name.removeprefix(STUDENT_PREFIX): value
        for name, value in tensors.items()
        if name.startswith(STUDENT_PREFIX)
    }
    match = match_state(params, stripped, "checkpoint", "config")
    problems = []
    if foreign:
        problems.append(f"keys without the '{STUDENT_PREFIX}' prefix: {listing(foreign)}")
    if match.missing:
        problems.append(f"missing for this config: {listing(match.missing)}")
    if match.unexpected:
        problems.append(f"not in this config's student: {listing(match.unexpected)}")
    problems += match.problems(missing=False, unexpected=False)
    if problems:
        raise UserError(
            "the checkpoint does not match the config's student (was it written by another "
            "config?): " + "; ".join(problems)
        )
    # assign=True swaps the parameter objects, so meta parameters need no storage of their own.
    student.load_state_dict(
        {name: stripped[name].to(param.dtype) for name, param in params.items()},
        strict=False,
        assign=True,
    )


def export_checkpoint(
    config: str | Path,
    out_dir: str | Path,
    ckpt: str | Path | None = None,
    use_ema: bool = True,
) -> Path:
    """Write the adapter folder of a training checkpoint of ``config``; returns ``out_dir``.

    Args:
        config: the run's mmengine config (its ``model.student`` dict describes the student).
        out_dir: the adapter folder to write.
        ckpt: an ``iter_XXXXXX`` folder or a run's checkpoint folder; None takes the latest of
            the config's ``checkpoint_dir``.
        use_ema: the EMA weights (default) or the raw trainable ones.
    """
    from safetensors.torch import load_file

    from arcflow.engine.launch import prepare_config
    from arcflow.models.adapter_format import save_arcflow_adapter
    from arcflow.models.builder import build_student_from_cfg

    cfg = prepare_config(str(config))
    student_cfg = cfg.model.get("student") if "model" in cfg else None
    if not isinstance(student_cfg, dict):
        raise UserError(f"{config} has no model.student dict: not an ArcFlow distillation config")
    folder = resolve_checkpoint(ckpt, cfg.checkpoint_dir)
    weights = folder / (EMA_FILE if use_ema else RAW_FILE)
    if not weights.is_file():
        hint = " (the run kept no EMA: use --non-ema)" if use_ema else ""
        raise UserError(f"{weights} does not exist{hint}")
    student = build_student_from_cfg(student_cfg, device="meta")
    assign_trainable(student, load_file(str(weights)))
    return save_arcflow_adapter(student, writable_dir(out_dir, "--out-dir"))


def _export(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description="Export an ArcFlow training checkpoint as a published-format adapter folder "
        "(config.json + diffusion_pytorch_model.safetensors, float16), loadable with "
        "load_arcflow_adapter / --adapter. The checkpoint's files are checked against its "
        "manifest first."
    )
    parser.add_argument("config", help="the run's mmengine config")
    parser.add_argument(
        "--ckpt",
        help="iter_XXXXXX folder or a run's checkpoint folder (default: the newest complete "
        "checkpoint of the config's run, checkpoints/<run>/)",
    )
    parser.add_argument("--out-dir", required=True, help="adapter folder to write")
    parser.add_argument(
        "--non-ema", action="store_true", help="export the raw trainable weights, not the EMA"
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of usage errors")
    args = parser.parse_args(argv)
    out = export_checkpoint(args.config, args.out_dir, args.ckpt, not args.non_ema)
    print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit code (2 with one line on stderr for a user mistake)."""
    return run_cli(_export, argv)
