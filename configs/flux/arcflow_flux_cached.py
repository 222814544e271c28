# configs/flux/arcflow_flux.py trained from a prompt cache, at the aspect ratio each prompt asks
# for: T5/CLIP encode every prompt once, not every step, and stay off the GPUs during training.
#   torchrun --nproc_per_node=8 tools/cache_prompts.py configs/flux/arcflow_flux.py \
#       --prompts data/prompts/train.jsonl --out data/prompt_cache/flux --launcher pytorch
#   torchrun --nproc_per_node=8 tools/train.py configs/flux/arcflow_flux_cached.py \
#       --launcher pytorch
# Storage (bf16, all 512 T5 positions kept: exact): ~4.2 GB per 1,000 prompts; ~0.8 GB with
# --padding trim at ~100 T5 tokens (approximate, see
# docs/prompt_data.md).
_base_ = ["./arcflow_flux.py"]

# ~1 megapixel sizes (height, width); prompts without a height/width train at the first.
_buckets = [
    (1024, 1024),
    (1152, 896),
    (896, 1152),
    (1216, 832),
    (832, 1216),
    (1344, 768),
    (768, 1344),
    (1536, 640),
    (640, 1536),
]
# The encoder stays in the config for the validation prompts only, kept on the CPU between uses.
model = dict(prompt_encoder=dict(offload=True))
train_dataloader = dict(
    _delete_=True,
    batch_size=4,  # per GPU
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type="InfiniteSampler", shuffle=True),
    batch_sampler=dict(type="BucketBatchSampler"),  # one bucket per batch; position resumes
    collate_fn=dict(type="arcflow.collate_prompts"),
    dataset=dict(
        type="PromptCacheDataset",
        path="data/prompt_cache/flux",
        buckets=dict(sizes=_buckets, vae_scale_factor=8),
    ),
)
