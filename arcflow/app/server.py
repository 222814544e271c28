"""The command line of ``app.py``: the inference command line's flags plus where to serve.

The parser is ``inference_flux.py``'s / ``inference_qwen.py``'s own (:func:`arcflow.pipelines.cli.
build_parser`), so every loading flag means the same here and a flag added there reaches the demo.
The generation flags (``--prompt``, ``--prompts-file``, ``--seed``, ``--nfe``, ``--num-images``,
``--guidance-scale``, ``--height``, ``--width``, ``--teacher-steps``) set the page's starting
values, and ``--out`` is the folder the page's PNGs are written to. Without ``--model``,
``--adapter`` or ``--preset`` the demo serves the tiny stack (CPU-sized, in the repository).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from arcflow.errors import UserError
from arcflow.pipelines import cli, loading

ARCHS = {"flux": loading.FLUX, "qwen_image": loading.QWEN_IMAGE}


def _arch(argv: list[str] | None) -> str:
    """``--arch`` alone, read first: it picks which command line's parser the rest goes to."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--arch", choices=sorted(ARCHS), default="flux")
    return parser.parse_known_args(argv)[0].arch


def build_parser(spec: loading.CliSpec) -> argparse.ArgumentParser:
    parser = cli.build_parser(spec)
    parser.prog = Path(sys.argv[0]).name
    parser.description = (
        f"A web page that generates with an ArcFlow-distilled {spec.name}. It takes the flags of "
        "the inference command line: the loading flags mean the same, the generation flags set "
        "the page's starting values, --out is where its PNGs go. Without --model, --adapter or "
        "--preset it serves the tiny stack on the CPU."
    )
    demo = parser.add_argument_group("web demo")
    demo.add_argument("--arch", choices=sorted(ARCHS), default="flux", help="which model family")
    demo.add_argument("--host", default="127.0.0.1", help="address to serve on")
    demo.add_argument("--port", type=int, default=7860, help="port to serve on")
    return parser


def parse_args(
    argv: list[str] | None = None, root: str | Path | None = None
) -> tuple[loading.CliSpec, argparse.Namespace, list[str]]:
    """The model family, its parsed flags and the prompts they name (the page's examples);
    usage errors exit through argparse. ``root``: the folder the tiny preset's checkpoints are
    under (default: the current folder)."""
    spec = ARCHS[_arch(argv)]
    spec = spec if root is None else spec.under(root)
    parser = build_parser(spec)
    args = parser.parse_args(argv)
    cli.check_arguments(args, parser)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be from 0 to 65535, got {args.port}")
    if args.model is None and args.adapter is None and args.preset is None:
        args.preset = "tiny"
    prompts = cli.read_prompts(args, parser) if args.prompt or args.prompts_file else []
    return spec, args, prompts


def check_port_free(host: str, port: int) -> None:
    """A UserError when ``host:port`` cannot be bound (another server holds it)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            raise UserError(
                f"cannot serve on {host}:{port} ({error.strerror}): another program holds the "
                "port; stop it or choose another with --port N"
            ) from None


def main(argv: list[str] | None = None, root: str | Path | None = None) -> int:
    """Load the model once, then serve the page until interrupted; 2 when nothing loads."""
    spec, args, prompts = parse_args(argv, root)
    check_port_free(args.host, args.port)  # before the model loads, not after
    loading.quiet_libraries()
    try:
        loaded = cli.load_from_args(spec, args)
    except loading.LoadError as error:
        print(f"error: {error}", file=sys.stderr)
        return cli.EXIT_LOAD_ERROR

    from arcflow.app.demo import Demo
    from arcflow.app.page import PageDefaults, build_page, launch

    demo = Demo(spec, loaded, args.out)
    demo.warm_up()
    defaults = PageDefaults(
        prompt=prompts[0] if prompts else "",
        examples=tuple(prompts),
        seed=args.seed,
        nfe=args.nfe,
        num_images=args.num_images,
        teacher_steps=args.teacher_steps,
        show_size=args.preset != "tiny",
    )
    launch(build_page(demo, defaults), demo, args.host, args.port)
    return 0
