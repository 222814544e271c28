# configs/tiny/arcflow_tiny_flux.py trained from a prompt cache instead of encoding captions every
# step, the way the released configs train at scale (docs/prompt_data.md):
#   python tools/cache_prompts.py configs/tiny/arcflow_tiny_flux.py \
#       --prompts data/prompts/tiny_scenes.txt --out work_dirs/prompt_cache/tiny-flux
#   python tools/train.py configs/tiny/arcflow_tiny_flux_cached.py
# data/prompts/tiny_scenes.txt holds the first 2048 captions of ScenePromptDataset(seed=5), the
# stream arcflow_tiny_flux.py reads.
_base_ = ["./arcflow_tiny_flux.py"]

model = dict(prompt_encoder=dict(offload=True))  # validation prompts only
train_dataloader = dict(
    _delete_=True,
    batch_size=16,
    num_workers=0,
    sampler=dict(type="InfiniteSampler", shuffle=True),
    batch_sampler=dict(type="BucketBatchSampler"),
    collate_fn=dict(type="arcflow.collate_prompts"),
    dataset=dict(
        type="PromptCacheDataset",
        path="work_dirs/prompt_cache/tiny-flux",
        buckets=dict(sizes=[(64, 64)], vae_scale_factor=4),
    ),
)
