"""Generate images with an ArcFlow-distilled FLUX.1-dev (2 steps by default).

    python inference_flux.py --prompt "a red fox in the snow" --out fox.png
    python inference_flux.py --preset tiny --prompt "a red circle at the top left"
    torchrun --nproc_per_node=8 inference_flux.py --prompts-file prompts.txt --out outputs/

Flags: python inference_flux.py --help (implementation: arcflow/pipelines/cli.py).
"""

from pathlib import Path

import arcflow.tinyworld.presets  # noqa: F401  (registers --preset tiny)
from arcflow.pipelines.cli import main
from arcflow.pipelines.loading import FLUX

if __name__ == "__main__":
    main(FLUX.under(Path(__file__).resolve().parent))
