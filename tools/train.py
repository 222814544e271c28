"""Train a config: ArcFlow distillation, or the tiny world's teachers and VAEs.

    python tools/train.py configs/qwen/arcflow_qwen.py
    torchrun --nproc_per_node=8 tools/train.py configs/flux/arcflow_flux.py --launcher pytorch

Restarting the same command resumes from the run's latest checkpoint (``--no-resume`` starts over).
"""

from __future__ import annotations

import argparse

import torch.distributed as dist
from mmengine.config import DictAction

from arcflow.engine.launch import prepare_config
from arcflow.engine.runner import ArcFlowRunner


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("config", help="mmengine Python config")
    parser.add_argument("--work-dir", help="logs folder (default work_dirs/<config name>)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, help="override keys: a.b=1")
    parser.add_argument("--launcher", choices=["none", "pytorch"], default="none")
    parser.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints")
    parser.add_argument("--seed", type=int, help="override the config's seed")
    parser.add_argument("--local-rank", "--local_rank", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    cfg = prepare_config(
        args.config, args.work_dir, args.cfg_options, args.launcher, not args.no_resume, args.seed
    )
    ArcFlowRunner.from_cfg(cfg).train()
    if dist.is_initialized():
        # Shut the group down while Python is alive: left to interpreter exit, gloo's worker
        # threads may still hold work whose tensors then abort the process (pytorch/pytorch#179291;
        # one such SIGABRT was seen here in ~30 two-rank FSDP runs, and one more after this
        # shutdown was added, on the rank that finished first). The barrier lets every rank's
        # last collective complete before any rank tears the group down.
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
