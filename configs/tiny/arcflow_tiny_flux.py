# ArcFlow distillation in the tiny world: the 2-NFE, K = 16 student of the shipped tiny FLUX
# teacher (checkpoints/tiny-flux/), data-free (scene captions only), on 2 CPU cores in minutes.
# The released recipe (docs/method.md, Distillation and Optimisation; the distiller settings come
# from _base_/models/arcflow_distiller.py) with the schedule scaled to a short run: AdamW betas
# (0.9, 0.95), lr x 0.1 on the log-rate head, EMA gamma 7. Scaled: 400 iterations (released 10k),
# teacher-ratio decay 80 (released 2000 of 10k: the same 20%), warm-up / clip / EMA start 20
# (released 100), LoRA rank 16 on a 192-wide base (released 256 on 3072), lr 5e-4 (1e-4: too slow
# for 400 steps), no LoRA dropout (nothing to regularise against in a 400-step run).
_base_ = [
    "../_base_/runtime/default.py",
    "../_base_/schedules/distill.py",
    "../_base_/models/arcflow_distiller.py",
]

_stack = "checkpoints/tiny-flux"
_max_iters = 400
_warmup = 20
model = dict(
    student=dict(
        arch="flux",
        transformer=dict(from_pretrained=_stack, subfolder="transformer"),
        num_components=16,
        lora_rank=16,
        lora_alpha=16,
        lora_dropout=0.0,
        lora_init="gaussian",
        guidance_scale=7.0,  # the tiny FLUX teacher's embedded guidance
        mean_bias_noise_std=0.05,
        init_seed=0,
    ),
    prompt_encoder=dict(arch="flux", pretrained=_stack, max_sequence_length=32),
    teacher_ratio_decay=80,
    latent_size=(16, 16),
)
train_dataloader = dict(
    batch_size=16,
    num_workers=0,
    sampler=dict(type="InfiniteSampler", shuffle=False),
    collate_fn=dict(type="default_collate"),
    dataset=dict(type="ScenePromptDataset", seed=5),
)
optim_wrapper = dict(
    optimizer=dict(lr=5e-4), clip_grad_from_iter=_warmup, paramwise_cfg=dict(prefer_8bit=False)
)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=_warmup),
]
train_cfg = dict(max_iters=_max_iters)
default_hooks = dict(logger=dict(interval=20))
custom_hooks = [
    dict(type="ArcFlowEMAHook", gamma=7.0, start_iter=_warmup),
    dict(type="ArcFlowCheckpointHook", interval=200, keep_last=1, keep_every=0),
    dict(type="ThroughputHook"),
]
