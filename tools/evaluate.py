"""Evaluate samplers side by side from the same noise (arcflow/evaluation/harness.py).

    python tools/evaluate.py --preset tiny --arch flux --prompts 100 --seeds 2 --out results/flux

Tiny world (``--prompts N``: N held-out scene prompts): FID in the attribute evaluator's feature
space against the teacher's samples and the rendered scenes, caption match (overall, per attribute
and per object count), agreement with the teacher, diversity, time per image and speed-up, beside
the reference rows ``data`` (the rendered scenes) and ``vae`` (their VAE reconstructions: the
ceiling of any sampler; PSNR vs the scenes). ``--num-objects 1,2`` evaluates N one-object and N
two-object prompts in one run, reported overall and per object count:

    python tools/evaluate.py --preset tiny --arch flux --prompts 200 --num-objects 1,2 \\
        --seeds 1 --out work_dirs/tiny_world_flux

Real models (``--model``, ``--adapter``, ``--prompts-file``): the same minus what needs the tiny
world; ``--inception`` / ``--clip`` add the standard FID and CLIP score from local checkpoints.
Writes results.json, results.md and grid.png.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import arcflow.tinyworld.presets  # noqa: F401  (registers --preset tiny)
from arcflow.errors import run_cli
from arcflow.pipelines import cli, loading

# torch and the harness load after argument parsing: --help and usage errors stay instant.
DEFAULT_SAMPLERS = "teacher50,teacher2,linear2,arcflow1,arcflow2,arcflow4"
ROOT = Path(__file__).resolve().parents[1]
# The tiny preset's checkpoints are the repository's, whatever the current folder.
SPECS = loading.specs_under(ROOT)
TINY_EVALUATOR = "checkpoints/tiny-evaluator"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    cli.add_stack_arguments(
        parser,
        SPECS,
        "a further adapter, sampled as NAME<N> (NAME: letters and _), e.g. for ablations: "
        "--student no_decay=work_dirs/x/adapter --samplers arcflow2,no_decay2 (repeatable)",
    )
    prompts = parser.add_mutually_exclusive_group(required=True)
    prompts.add_argument("--prompts", type=int, help="N held-out tiny-world scene prompts")
    prompts.add_argument("--prompts-file", type=Path, help="text file, one prompt per line")
    parser.add_argument(
        "--num-objects",
        choices=["1", "2", "1,2"],
        metavar="{1|2|1,2}",  # argparse's own "{1,2,1,2}" hides that 1,2 is one choice
        help="tiny world: N prompts with this many objects; 1,2: N of each, in one report "
        "(default: N prompts of either count)",
    )
    parser.add_argument("--seeds", type=int, default=2, help="images per prompt")
    parser.add_argument("--seed", type=int, default=0, help="image i starts from seed + i")
    parser.add_argument("--samplers", default=DEFAULT_SAMPLERS, help="comma-separated")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--batch-prompts", type=int, default=8, help="prompts per batch")
    parser.add_argument("--evaluator", help=f"attribute evaluator (tiny world: {TINY_EVALUATOR})")
    parser.add_argument("--inception", type=Path, help="TorchScript inception-2015-12-05.pt")
    parser.add_argument("--clip", type=Path, help="local transformers CLIPModel folder")
    parser.add_argument("--grid-prompts", type=int, default=8, help="columns of grid.png")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from arcflow.evaluation.harness import SAMPLER_KINDS, parse_samplers

    extra = dict(item.split("=", 1) for item in args.student if "=" in item)
    if len(extra) != len(args.student) or not all(re.fullmatch("[a-z_]+", n) for n in extra):
        parser.error("--student takes NAME=FOLDER, NAME in lower-case letters and _")
    try:
        samplers = parse_samplers(args.samplers, [*SAMPLER_KINDS, *extra])
    except ValueError as error:
        parser.error(str(error))
    for flag in ("prompts", "seeds", "batch_prompts"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    spec = SPECS[args.arch]
    tiny = args.preset == "tiny"
    linear = args.linear_adapter
    if linear is None and tiny:
        linear = spec.preset_folder("tiny", "linear_adapters")
    used = {s.kind for s in samplers}
    if "linear" in used and not (linear and Path(linear).is_dir()):
        parser.error(
            f"linear samplers need --linear-adapter (a K = 1 adapter folder); {linear} does not "
            "exist. Drop linear<N> from --samplers or train the baseline first."
        )
    folders = {k: v for k, v in {"linear": linear, **extra}.items() if k in used}
    for name, folder in folders.items():
        if not Path(folder).is_dir():
            parser.error(f"--student {name}={folder}: no such folder")
    tiny_world = args.prompts is not None
    if args.num_objects and not tiny_world:
        parser.error("--num-objects picks tiny-world prompts: it needs --prompts N")
    evaluator_path = args.evaluator or (TINY_EVALUATOR if tiny_world else None)
    if evaluator_path and not Path(evaluator_path).is_dir():
        parser.error(f"attribute evaluator {evaluator_path} not found (tools/train_evaluator.py)")

    loading.quiet_libraries()

    from arcflow.evaluation import features, harness, report
    from arcflow.models.loading import folder_fingerprint
    from arcflow.tinyworld.evaluator import AttributeEvaluator
    from arcflow.tinyworld.scenes import heldout_prompts, render_batch
    from arcflow.tinyworld.scoring import EvaluatorFeatures, SceneCaptionScorer

    try:
        stack = harness.load_stack(spec, args, folders)
    except loading.LoadError as error:
        print(f"error: {error}", file=sys.stderr)
        return cli.EXIT_LOAD_ERROR
    device = stack.device

    real_images = None
    if tiny_world:
        counts = [int(n) for n in args.num_objects.split(",")] if args.num_objects else [None]
        pairs = [pair for n in counts for pair in heldout_prompts(args.prompts, args.seed, n)]
        texts = [prompt for prompt, _ in pairs]
        real_images = features.to_uint8(render_batch([scene for _, scene in pairs]))
    else:
        texts = cli.prompts_file(args.prompts_file, parser)
    scorer = None
    spaces: list[features.FeatureSpace] = []
    if evaluator_path:
        evaluator = AttributeEvaluator.from_pretrained(evaluator_path).to(device)
        scorer = SceneCaptionScorer(evaluator)
        spaces.append(EvaluatorFeatures(evaluator))
    clip = None
    try:
        if args.inception:
            spaces.append(features.InceptionFeatures(args.inception, device))
        if args.clip:
            clip = features.ClipScorer(args.clip, device)
            spaces.append(clip)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return cli.EXIT_LOAD_ERROR
    if not spaces:
        print(
            "note: no feature space (no --evaluator, --inception or --clip): FID and diversity "
            "are skipped; agreement, timing and NFE are still measured.",
            file=sys.stderr,
        )

    result = harness.evaluate(
        stack,
        samplers,
        texts,
        seeds=args.seeds,
        seed=args.seed,
        batch_prompts=args.batch_prompts,
        feature_spaces=spaces,
        scorer=scorer,
        real_images=real_images,
        clip=clip,
        grid_prompts=args.grid_prompts,
        progress=True,
    )
    result.settings.update(
        arch=args.arch,
        model=stack.sources["model"],
        adapter=stack.sources["arcflow"],
        students=folders,
        dtype=str(stack.dtype),
        num_objects=args.num_objects,
    )
    # Which weights made these numbers: the tiny world's checkpoints are rebuilt now and then.
    sources = {
        "transformer": Path(stack.sources["model"]) / "transformer",
        "adapter": stack.sources["arcflow"],
        **folders,
    }
    result.settings["weights_sha256"] = {k: folder_fingerprint(v) for k, v in sources.items()}
    paths = report.write_report(result, args.out)
    print(report.markdown_table(result))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
