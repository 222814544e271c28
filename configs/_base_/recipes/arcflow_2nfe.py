# The released distillation recipe shared by FLUX.1-dev and Qwen-Image (docs/method.md,
# Distillation and Optimisation): prompts from data/prompts/train.txt, EMA, checkpoints, validation
# grids. The distiller's settings are in ../models/arcflow_distiller.py (included by the student
# pieces).
_base_ = ["../runtime/default.py", "../schedules/distill.py"]

train_dataloader = dict(
    batch_size=4,  # per GPU
    num_workers=2,
    sampler=dict(type="InfiniteSampler", shuffle=True),
    collate_fn=dict(type="default_collate"),
    dataset=dict(type="PromptDataset", prompts="data/prompts/train.txt"),
)
_validation_prompts = [
    "a photo of a red fox sitting in fresh snow",
    "a watercolor painting of a lighthouse at dusk",
    "a bowl of ramen on a wooden table, studio lighting",
    'a neon sign that reads "ArcFlow" above a cafe door',
]
custom_hooks = [
    dict(type="ArcFlowEMAHook", gamma=7.0, start_iter=100),
    dict(type="ArcFlowCheckpointHook", interval=500, keep_last=2, keep_every=5000),
    dict(type="ThroughputHook"),
    dict(type="ValidationSamplesHook", interval=500, prompts=_validation_prompts, seeds=(0, 1)),
]
