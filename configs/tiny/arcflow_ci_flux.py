# A seconds-long distillation run for tests and CI: a randomly initialised 1+1-block FLUX
# architecture as the teacher, a K = 4 rank-4 student, a prompt cache with two aspect-ratio buckets.
# It exercises the code path of configs/flux/arcflow_flux_cached.py at toy size.
_base_ = ["../_base_/runtime/default.py", "../_base_/schedules/distill.py"]

# The tiny world lives outside the core: import its named sizes and datasets.
_tiny_world = ["arcflow.tinyworld.architectures", "arcflow.tinyworld.datasets"]
custom_imports = dict(imports=_tiny_world, allow_failed_imports=False)

model = dict(
    type="ArcFlowDistiller",
    student=dict(
        arch="flux",
        transformer=dict(from_config="toy"),
        num_components=4,
        lora_rank=4,
        lora_alpha=4,
        guidance_scale=3.5,
    ),
    nfe=2,
    teacher_ratio_decay=4,
    latent_size=(8, 8),
    seed=0,
)
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    sampler=dict(type="InfiniteSampler", shuffle=True),
    batch_sampler=dict(type="BucketBatchSampler"),
    collate_fn=dict(type="arcflow.collate_prompts"),
    dataset=dict(
        type="PromptCacheDataset",
        path="work_dirs/ci_prompt_cache",
        # 32x32 and 24x40 pixels: 8x8 and 6x10 latents of a VAE that downsamples by 4
        buckets=dict(sizes=[(32, 32), (24, 40)], vae_scale_factor=4),
    ),
)
optim_wrapper = dict(optimizer=dict(lr=1e-3), clip_grad_from_iter=2)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=2),
]
train_cfg = dict(max_iters=6)
default_hooks = dict(logger=dict(interval=1))
custom_hooks = [
    dict(type="ArcFlowEMAHook", gamma=7.0, start_iter=2),
    dict(type="ArcFlowCheckpointHook", interval=2, keep_last=2, keep_every=0),
    dict(type="ThroughputHook"),
    dict(type="ValidationSamplesHook", interval=3, num_prompts=2, seeds=(0,)),
]
