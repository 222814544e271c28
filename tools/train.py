"""Train a config: ArcFlow distillation, or the tiny world's teachers and VAEs.

    python tools/train.py configs/qwen/arcflow_qwen.py
    torchrun --nproc_per_node=8 tools/train.py configs/flux/arcflow_flux.py --launcher pytorch

Restarting the same command resumes from the run's newest complete checkpoint (``--no-resume``
starts over, ``--resume-from`` picks one). SIGTERM, SIGINT or the early-warning signal (SIGUSR1)
finish the current iteration, write its checkpoint and exit with code 75: rerun the command to
resume. Mistakes (a missing config, a misspelt key, a checkpoint of another config) end in one
line and exit code 2; --debug (or ARCFLOW_DEBUG=1) shows the traceback. Guide: docs/training.md.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch.distributed as dist
from mmengine.config import DictAction

from arcflow.engine.launch import prepare_config
from arcflow.engine.preemption import EXIT_RESUME, parse_signal
from arcflow.engine.runner import ArcFlowRunner
from arcflow.errors import UserError, run_cli


def signal_name(text: str) -> str:
    try:
        return parse_signal(text).name
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("config", help="mmengine Python config")
    parser.add_argument("--work-dir", help="logs folder (default work_dirs/<config name>)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, help="override keys: a.b=1")
    parser.add_argument("--launcher", choices=["none", "pytorch"], default="none")
    resume = parser.add_mutually_exclusive_group()
    resume.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints")
    resume.add_argument(
        "--resume-from",
        metavar="PATH",
        help="resume from this iter_XXXXXX folder (or the newest complete one of a run's folder)",
    )
    parser.add_argument(
        "--preempt-signal",
        metavar="SIG",
        type=signal_name,
        help="early-warning signal that checkpoints and stops the run like SIGTERM "
        "(default SIGUSR1, as SLURM's --signal sends)",
    )
    parser.add_argument("--seed", type=int, help="override the config's seed")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of usage errors")
    parser.add_argument("--local-rank", "--local_rank", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    cfg = prepare_config(
        args.config,
        args.work_dir,
        args.cfg_options,
        args.launcher,
        not args.no_resume,
        args.seed,
        args.resume_from,
        args.preempt_signal,
    )
    runner = ArcFlowRunner.from_cfg(cfg)
    try:
        runner.train()
    except UserError:
        # Every rank raised it at the same point (the checkpoint hook shares rank 0's failures
        # with all ranks), so no collective is in flight: shut gloo down before Python exits, as
        # below.
        if dist.is_initialized():
            dist.destroy_process_group()
        raise
    if dist.is_initialized():
        # Shut the group down while Python is alive: left to interpreter exit, gloo's worker
        # threads may still hold work whose tensors then abort the process (pytorch/pytorch#179291;
        # one such SIGABRT was seen here in ~30 two-rank FSDP runs, and one more after this
        # shutdown was added, on the rank that finished first). The barrier lets every rank's
        # last collective complete before any rank tears the group down.
        dist.barrier()
        dist.destroy_process_group()
    preempted = any(getattr(hook, "preempted", False) for hook in runner.hooks)
    return EXIT_RESUME if preempted else 0


if __name__ == "__main__":
    code = run_cli(main)
    if "LOCAL_RANK" in os.environ:
        # A torchrun worker whose run has ended: logs, checkpoints and the process group are
        # closed. Skip the interpreter's teardown, where gloo's threads can still abort a finished
        # run (SIGABRT, "terminate called without an active exception"; pytorch/pytorch#179291),
        # which torchrun would report as a failed job.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
