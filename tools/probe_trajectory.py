"""How closely each sampler follows the teacher's own path inside each student step.

    python tools/probe_trajectory.py --preset tiny --arch flux
    python tools/probe_trajectory.py --preset tiny --arch qwen_image --student k4=work_dirs/k4
    python tools/probe_trajectory.py --arch flux --prompts-file prompts.txt --out work_dirs/probe

For each student step and each sampler (the ArcFlow adapter, the K = 1 linear adapter, further
--student adapters, and the teacher's one Euler step), from that sampler's own state at the step's
start: the teacher's path over the step (--substeps Heun substeps, the sampler's guidance: FLUX's
embedded guidance, Qwen-Image's true CFG), and the sampler's distance to it at --fractions of the
step, relative to the teacher's displacement over the step. The teacher path's chord deviation is
what the best straight step must miss. Means over the prompts with 95 % t-intervals; writes
probe.jsonl and probe.png under --out and prints the table (arcflow/evaluation/trajectory.py).
Students named LABEL@ITERATIONS (checkpoints of one run, e.g. --student fast@800=DIR) also give
curves.png: the step-0 error against training length, one line per LABEL.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import arcflow.tinyworld.presets  # noqa: F401  (registers --preset tiny)
from arcflow.errors import run_cli
from arcflow.pipelines import cli, loading
from arcflow.released import RELEASED_NFE

ROOT = Path(__file__).resolve().parents[1]
# The tiny preset's checkpoints are the repository's, whatever the current folder.
SPECS = loading.specs_under(ROOT)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    cli.add_stack_arguments(parser, SPECS, "a further adapter probed as NAME (repeatable)")
    prompts = parser.add_mutually_exclusive_group()
    prompts.add_argument(
        "--prompts", type=int, help="N held-out tiny-world scene prompts (tiny preset: 32)"
    )
    prompts.add_argument("--prompts-file", type=Path, help="text file, one prompt per line")
    parser.add_argument(
        "--num-objects",
        type=int,
        choices=[1, 2],
        default=1,
        help="tiny world: objects per prompt",
    )
    parser.add_argument("--seed", type=int, default=0, help="image i starts from seed + i")
    parser.add_argument("--nfe", type=int, default=RELEASED_NFE, help="student steps")
    parser.add_argument("--substeps", type=int, default=16, help="teacher substeps per step")
    parser.add_argument("--steps", type=int, help="probe the first N student steps (default: all)")
    parser.add_argument("--solver", choices=["heun", "euler"], default="heun")
    parser.add_argument(
        "--fractions", default="0.25,0.5,0.75,1", help="where inside each step to compare"
    )
    parser.add_argument("--batch-prompts", type=int, default=16, help="prompts per batch")
    parser.add_argument(
        "--oracle",
        action="append",
        default=[],
        metavar="K[:RMIN:RMAX]",
        help="also probe a policy of K components fitted per image by the imitation loss (no "
        "network; log-rates fixed, evenly spaced over [RMIN, RMAX], default the released span "
        "ln 0.2 .. ln 4): what the loss reaches with unlimited capacity (repeatable)",
    )
    parser.add_argument(
        "--oracle-steps", type=int, default=1500, help="Adam steps of each --oracle fit per step"
    )
    parser.add_argument(
        "--out", type=Path, help="output folder (default: work_dirs/probe_trajectory_<arch>)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    spec = SPECS[args.arch]
    tiny = args.preset == "tiny"
    try:
        fractions = [float(f) for f in args.fractions.split(",")]
    except ValueError:
        parser.error(f"--fractions takes comma-separated numbers, got {args.fractions!r}")
    if any(not 0 < f <= 1 for f in fractions):
        parser.error(f"--fractions must lie in (0, 1], got {args.fractions}")
    oracles = {}
    for spec_text in args.oracle:
        try:
            k, *span = spec_text.split(":")
            oracle = (int(k), tuple(float(r) for r in span) or None)
        except ValueError:
            parser.error(f"--oracle takes K or K:RMIN:RMAX, got {spec_text!r}")
        if oracle[0] < 1 or (oracle[1] is not None and len(oracle[1]) != 2):
            parser.error(f"--oracle takes K >= 1 or K:RMIN:RMAX, got {spec_text!r}")
        oracles["oracle_k" + spec_text.replace(":", "_")] = oracle
    for flag in ("prompts", "nfe", "substeps", "batch_prompts", "oracle_steps", "steps"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    if args.steps is not None and args.steps > args.nfe:
        parser.error(f"--steps {args.steps} is more than --nfe {args.nfe}")
    if args.prompts is None and args.prompts_file is None:
        if not tiny:
            parser.error("give --prompts-file, or --prompts N for tiny-world scene prompts")
        args.prompts = 32
    extra = dict(item.split("=", 1) for item in args.student if "=" in item)
    if len(extra) != len(args.student):
        parser.error("--student takes NAME=FOLDER")
    linear = args.linear_adapter
    if linear is None and tiny:
        linear = spec.preset_folder("tiny", "linear_adapters")
    folders = dict(extra)
    if linear and linear != "none":
        folders = {"linear": linear, **extra}
    for name, folder in folders.items():
        if not Path(folder).is_dir():
            parser.error(f"adapter {name}={folder}: no such folder")
    texts: list[str]
    if args.prompts_file is not None:
        texts = cli.prompts_file(args.prompts_file, parser)
    else:
        from arcflow.tinyworld.scenes import heldout_prompts

        texts = [p for p, _ in heldout_prompts(args.prompts, args.seed, args.num_objects)]

    loading.quiet_libraries()
    from arcflow.evaluation import harness, trajectory
    from arcflow.released import RELEASED_LOG_GAMMA_RANGE

    try:
        stack = harness.load_stack(spec, args, folders)
    except loading.LoadError as error:
        print(f"error: {error}", file=sys.stderr)
        return cli.EXIT_LOAD_ERROR
    samplers = {trajectory.TEACHER_EULER: trajectory.teacher_euler_step(stack.teacher)}
    samplers.update({name: trajectory.student_step(s) for name, s in stack.students.items()})
    for name, (k, span) in oracles.items():
        samplers[name] = trajectory.imitation_oracle_step(
            stack.teacher,
            k,
            steps=args.oracle_steps,
            shift=stack.shift,
            seed=args.seed,
            log_gamma_range=span or RELEASED_LOG_GAMMA_RANGE,
        )
    result = trajectory.probe_trajectories(
        stack,
        samplers,
        texts,
        seed=args.seed,
        batch_prompts=args.batch_prompts,
        nfe=args.nfe,
        substeps=args.substeps,
        solver=args.solver,
        fractions=fractions,
        steps=args.steps,
        progress=True,
    )
    result.settings.update(arch=args.arch, sources=stack.sources, dtype=str(stack.dtype))
    out = args.out or Path("work_dirs") / f"probe_trajectory_{args.arch}"
    jsonl = trajectory.write_jsonl(result, out / "probe.jsonl")
    png = trajectory.plot(
        result,
        out / "probe.png",
        f"{'tiny ' + spec.name if tiny else spec.name}: distance to the teacher's path",
    )
    written = [jsonl, png]
    if trajectory.learning_curves(result):
        written.append(trajectory.plot_learning_curves(result, out / "curves.png"))
    print(trajectory.markdown_table(result))
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
