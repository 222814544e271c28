# Distil FLUX.1-dev into a 2-NFE ArcFlow student with the released recipe (method.md sections 5-6).
#   python tools/train.py configs/flux/arcflow_flux.py
#   torchrun --nproc_per_node=8 tools/train.py configs/flux/arcflow_flux.py --launcher pytorch
# Prompts: one per line in data/prompts/train.txt (or point train_dataloader.dataset.prompts
# elsewhere); the released run used ~2.3 M prompts.
_base_ = [
    "../_base_/models/flux_student.py",
    "../_base_/runtime/default.py",
    "../_base_/schedules/distill.py",
]

model = dict(
    prompt_encoder=dict(
        arch="flux",
        pretrained="black-forest-labs/FLUX.1-dev",
        max_sequence_length=512,
        torch_dtype="bfloat16",
    ),
    nfe=2,
    timestep_ratio=1.0,
    teacher_ratio_decay=2000,
    imitation=dict(
        num_intermediate_states=4,
        window_substeps=3,
        total_substeps=128,
        policy_dropout=0.1,
        loss_scale=15.0,
        shift=3.2,
    ),
    latent_size=(128, 128),  # 1024 x 1024 pixels
    mode="data_free",
    seed=0,
)
train_dataloader = dict(
    batch_size=4,  # per GPU
    num_workers=2,
    sampler=dict(type="InfiniteSampler", shuffle=True),
    collate_fn=dict(type="default_collate"),
    dataset=dict(type="PromptDataset", prompts="data/prompts/train.txt"),
)
train_cfg = dict(max_iters=10000)
custom_hooks = [
    dict(type="ArcFlowEMAHook", gamma=7.0, start_iter=100),
    dict(type="ArcFlowCheckpointHook", interval=500, keep_last=2, keep_every=5000),
    dict(type="ThroughputHook"),
    dict(
        type="ValidationSamplesHook",
        interval=500,
        prompts=[
            "a photo of a red fox sitting in fresh snow",
            "a watercolor painting of a lighthouse at dusk",
            "a bowl of ramen on a wooden table, studio lighting",
            "a street sign that reads ArcFlow",
        ],
        seeds=(0, 1),
        vae="black-forest-labs/FLUX.1-dev",
    ),
]
