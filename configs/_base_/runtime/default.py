# Runtime shared by every training config: logging to work_dirs/<run>/ (text + TensorBoard),
# the project's EMA / checkpoint / throughput hooks, iteration-based progress.
default_scope = "arcflow"

# cudnn_attention=False: cuDNN's fused attention fails in the backward pass of FLUX.1-dev's
# attention on an H200 (torch 2.11, CUDA 13.0); flash attention trains it (ArcFlowRunner).
env_cfg = dict(
    cudnn_benchmark=False,
    cudnn_attention=False,
    mp_cfg=dict(mp_start_method="fork"),
    dist_cfg=dict(backend="nccl"),
)

default_hooks = dict(
    runtime_info=dict(type="RuntimeInfoHook"),
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=10),
    param_scheduler=dict(type="ParamSchedulerHook"),
    checkpoint=None,  # replaced by ArcFlowCheckpointHook: trainable tensors only
    sampler_seed=dict(type="DistSamplerSeedHook"),
)
custom_hooks = [
    dict(type="ArcFlowEMAHook", gamma=7.0, start_iter=100),
    dict(type="ArcFlowCheckpointHook", interval=500, keep_last=2, keep_every=5000),
    dict(type="ThroughputHook"),
]

# window_size=1: TensorBoard and the text log get each step's own value, not a running mean.
log_processor = dict(by_epoch=False, window_size=1)
visualizer = dict(
    type="Visualizer",
    vis_backends=[dict(type="LocalVisBackend"), dict(type="TensorboardVisBackend")],
)
log_level = "INFO"
randomness = dict(seed=0)
