# Add to a config's _base_ list to also log to Weights & Biases. With WANDB_API_KEY set the run is
# synced; without it (or with WANDB_MODE=offline) wandb writes an offline run under work_dirs/.
import os

visualizer = dict(
    type="Visualizer",
    vis_backends=[
        dict(type="LocalVisBackend"),
        dict(type="TensorboardVisBackend"),
        dict(
            type="WandbVisBackend",
            init_kwargs=dict(
                project="arcflow",
                mode="online" if os.environ.get("WANDB_API_KEY") else "offline",
            ),
        ),
    ],
)
