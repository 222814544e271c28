# Add to a config's _base_ list to also log to Weights & Biases, beside the text log and
# TensorBoard. With WANDB_API_KEY set the run is synced; without it (or with WANDB_MODE=offline)
# wandb writes an offline run under work_dirs/<run>/<time>/vis_data/wandb/ (`wandb sync` uploads
# it later). The dict is passed to wandb.init: --cfg-options wandb.project=... wandb.name=...
wandb = dict(project="arcflow")
