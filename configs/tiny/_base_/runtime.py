# Runtime shared by the tiny world's trainings (VAEs, teachers): the project runtime, AdamW over
# the whole trained network, linear warm-up then cosine decay, EMA exported as the shipped weights.
_base_ = ["../../_base_/runtime/default.py"]

# The tiny world lives outside the core: import its named sizes, datasets and trainers.
_tiny_world = [
    "arcflow.tinyworld.architectures",
    "arcflow.tinyworld.datasets",
    "arcflow.tinyworld.flow_matching",
    "arcflow.tinyworld.vae_trainer",
]
custom_imports = dict(imports=_tiny_world, allow_failed_imports=False)

optim_wrapper = dict(
    type="ArcFlowOptimWrapper",
    constructor="ArcFlowOptimWrapperConstructor",
    optimizer=dict(type="AdamW", lr=1e-3, betas=(0.9, 0.99), weight_decay=0.0),
    clip_grad=dict(max_norm=1.0),
    clip_grad_from_iter=0,
)
train_cfg = dict(type="IterBasedTrainLoop", max_iters=600, val_interval=10**9)
# The cosine leaves ``end`` unset: mmengine's Runner ends it at the run's own
# ``train_cfg.max_iters``, so a stage config that changes the length sets that alone.
param_scheduler = [
    dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type="CosineAnnealingLR", by_epoch=False, begin=50, eta_min_ratio=0.05),
]
default_hooks = dict(logger=dict(interval=25))
custom_hooks = [
    dict(type="ArcFlowEMAHook", gamma=7.0, start_iter=50),
    dict(type="ArcFlowCheckpointHook", interval=200, keep_last=1, keep_every=0),
    dict(type="ThroughputHook"),
]
