"""A web page that generates with the ArcFlow students (Gradio).

    python app.py                      # the tiny FLUX stack on the CPU, http://127.0.0.1:7860
    python app.py --arch qwen_image    # the tiny Qwen-Image stack
    python app.py --model black-forest-labs/FLUX.1-dev --adapter ymyy307/ArcFlow/arcflow-flux-2steps

It takes inference_flux.py's / inference_qwen.py's flags (python app.py --help; implementation:
arcflow/app/).
"""

import sys
from pathlib import Path

import arcflow.tinyworld.presets  # noqa: F401  (registers --preset tiny)
from arcflow.app.server import main
from arcflow.errors import run_cli

if __name__ == "__main__":
    # run_cli: mistakes (a port in use) in one line, Ctrl-C without a traceback, CPU threads chosen
    # from the machine's load, as every other tool
    root = Path(__file__).resolve().parent
    sys.exit(run_cli(lambda argv: main(argv, root=root)))
