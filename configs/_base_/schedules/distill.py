# Optimisation of the released runs (docs/method.md, Optimisation): AdamW lr 1e-4, betas
# (0.9, 0.95), no weight decay, x0.1 on the log-rate head, 8-bit AdamW on CUDA when bitsandbytes is
# installed; warm-up over 100 iterations from 0.001 x lr, then constant; global grad-norm clip 50
# from iteration 100, non-finite norms skip the step.
optim_wrapper = dict(
    type="ArcFlowOptimWrapper",
    constructor="ArcFlowOptimWrapperConstructor",
    optimizer=dict(type="AdamW", lr=1e-4, betas=(0.9, 0.95), weight_decay=0.0),
    paramwise_cfg=dict(lr_mult=dict(log_rates=0.1), prefer_8bit=True),
    clip_grad=dict(max_norm=50.0),
    clip_grad_from_iter=100,
)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=100),
]
train_cfg = dict(type="IterBasedTrainLoop", max_iters=10000, val_interval=10**9)
