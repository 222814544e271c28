"""Count the trainable and total parameters of a config's ArcFlow student.

    python tools/count_params.py configs/_base_/models/flux_student.py

The student is built on the meta device from the architecture in the config: no weights are
loaded and no memory is used. The config holds the student as ``model.student`` or ``student``.
"""

from __future__ import annotations

import argparse
import sys

from mmengine.config import Config

from arcflow.engine.launch import load_config
from arcflow.errors import run_cli
from arcflow.models import build_student_from_cfg, count_parameters


def student_cfg(cfg: Config) -> dict:
    model = cfg.get("model")
    if model is not None and "student" in model:
        return model["student"]
    if "student" in cfg:
        return cfg["student"]
    raise KeyError("the config defines neither model.student nor student")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="mmengine config file")
    args = parser.parse_args(argv)

    student = build_student_from_cfg(student_cfg(load_config(args.config)), device="meta")
    counts = count_parameters(student)
    k, rank = student.num_components, student.lora_rank
    print(f"student:   {student.arch.name}, K = {k}, LoRA rank {rank}")
    print(f"trainable: {counts.trainable:>15,}  ({counts.trainable / 1e9:.2f} B)")
    print(f"base:      {counts.frozen:>15,}  ({counts.frozen / 1e9:.2f} B, frozen teacher)")
    print(f"total:     {counts.total:>15,}  ({counts.total / 1e9:.2f} B)")
    print(f"trainable / base:  {100 * counts.trainable / counts.frozen:.1f} %")
    print(f"trainable / total: {100 * counts.trainable / counts.total:.1f} %")


if __name__ == "__main__":
    sys.exit(run_cli(main))
