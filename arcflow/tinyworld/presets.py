"""``--preset tiny``: the tiny world's shipped stacks as the command lines' default folders.

Importing this module registers the preset (the entry scripts, ``app.py`` and the tools do); the
folders are relative to the repository, where the entry scripts live.
"""

from __future__ import annotations

from arcflow.pipelines.loading import Preset, register_preset

TINY = register_preset(
    Preset(
        name="tiny",
        help="the shipped CPU-sized tiny-world stack, distilled in this repository",
        missing_hint=(
            "Build the tiny world first (python tools/build_tiny_world.py, from the repository "
            "root)"
        ),
        models={"flux": "checkpoints/tiny-flux", "qwen_image": "checkpoints/tiny-qwen"},
        adapters={
            "flux": "checkpoints/tiny-flux-arcflow",
            "qwen_image": "checkpoints/tiny-qwen-arcflow",
        },
        linear_adapters={
            "flux": "checkpoints/tiny-flux-linear",
            "qwen_image": "checkpoints/tiny-qwen-linear",
        },
    )
)
