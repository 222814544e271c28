"""Export a training checkpoint as a published-format ArcFlow adapter (EMA weights by default).

    python export_arcflow_to_diffusers.py configs/flux/arcflow_flux.py --out-dir adapters/flux
    python export_arcflow_to_diffusers.py CONFIG --ckpt checkpoints/<run>/iter_002000 \
        --out-dir DIR [--non-ema]

Implementation: arcflow/pipelines/export.py.
"""

import sys

from arcflow.pipelines.export import main

if __name__ == "__main__":
    sys.exit(main())
