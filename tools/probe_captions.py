"""Which caption words a tiny-world teacher reads, per noise level (evaluation/caption_probe.py).

    python tools/probe_captions.py --arch flux --out work_dirs/probe_flux
    python tools/probe_captions.py --arch flux --transformer checkpoints/tiny-flux-stage-a \\
        --out work_dirs/probe_stage_a

For held-out one-object scenes and fixed noise, the velocity error on the objects with the true
caption and with captions that change one attribute (colour, shape, size, position), another
scene's caption, or the empty prompt. A gap near 0 % means the model ignores that word at that
noise level. Writes results.json, gaps.md and gaps.png under --out.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from arcflow.pipelines import cli

# The tiny presets of inference_{flux,qwen}.py: stack folders and prompt lengths.
SPECS = {"flux": cli.FLUX, "qwen_image": cli.QWEN_IMAGE}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arch", choices=sorted(SPECS), default="flux")
    parser.add_argument("--model", help="stack folder: text side and VAE (default: the tiny one)")
    parser.add_argument(
        "--transformer", help="folder whose transformer/ is probed (default: the stack's)"
    )
    parser.add_argument(
        "--guidance",
        type=float,
        help="embedded guidance of a FLUX transformer (default 1.0: the conditional velocity)",
    )
    parser.add_argument("--scenes", type=int, default=128, help="held-out scenes")
    parser.add_argument("--num-objects", type=int, choices=[1, 2], default=1)
    parser.add_argument("--sigmas", default="0.3,0.5,0.7,0.9", help="comma-separated, in (0, 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    return parser


def parse_sigmas(text: str, parser: argparse.ArgumentParser) -> list[float]:
    try:
        sigmas = [float(s) for s in text.split(",")]
    except ValueError:
        parser.error(f"--sigmas must be comma-separated numbers, got {text!r}")
    if not all(0 < s < 1 for s in sigmas):
        parser.error(f"--sigmas must lie in (0, 1), got {sigmas}")
    return sigmas


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from arcflow.evaluation.caption_probe import VARIANTS

    sigmas = sorted(results)
    fig, ax = plt.subplots(figsize=(6, 4))
    for variant in VARIANTS[1:]:
        ax.plot(sigmas, [100 * results[s][variant]["gap"] for s in sigmas], "o-", label=variant)
    ax.axhline(0.0, color="gray", lw=0.8)
    ax.set_xlabel("noise level sigma")
    ax.set_ylabel("loss increase over the true caption (%)")
    ax.set_title("What the caption's words change in the teacher's velocity")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    sigmas = parse_sigmas(args.sigmas, parser)
    model = args.model or SPECS[args.arch].tiny_model
    transformer = args.transformer or model
    for folder, what in ((model, "vae"), (transformer, "transformer")):
        if not (Path(folder) / what / "config.json").exists():
            parser.error(f"{folder}/{what}/config.json not found: build or export it first")

    from arcflow.evaluation.caption_probe import gap_table, probe_captions
    from arcflow.models.flow_matching import FlowMatchingTrainer

    guidance = args.guidance
    if args.arch == "flux" and guidance is None:
        guidance = 1.0
    trainer = FlowMatchingTrainer(
        args.arch,
        transformer=dict(from_pretrained=transformer, subfolder="transformer"),
        pretrained=model,
        max_sequence_length=SPECS[args.arch].tiny_max_sequence_length,
        guidance_scale=guidance,
    )
    results = probe_captions(trainer, args.scenes, sigmas, args.seed, args.num_objects)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({str(k): v for k, v in results.items()}))
    table = gap_table(results)
    (args.out / "gaps.md").write_text(table + "\n")
    plot(results, args.out / "gaps.png")
    print(table)
    print(f"wrote {args.out}/results.json, gaps.md, gaps.png")


if __name__ == "__main__":
    main()
