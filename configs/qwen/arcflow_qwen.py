# Distil Qwen-Image into a 2-NFE ArcFlow student with the released recipe (method.md sections 5-6).
# The teacher runs true CFG 4.0 with the empty negative prompt; the student runs without CFG.
#   python tools/train.py configs/qwen/arcflow_qwen.py
#   torchrun --nproc_per_node=8 tools/train.py configs/qwen/arcflow_qwen.py --launcher pytorch
_base_ = [
    "../_base_/models/qwen_student.py",
    "../_base_/runtime/default.py",
    "../_base_/schedules/distill.py",
]

model = dict(
    prompt_encoder=dict(
        arch="qwen_image",
        pretrained="Qwen/Qwen-Image",
        max_sequence_length=1024,
        torch_dtype="bfloat16",
        negative_prompt="",
    ),
    nfe=2,
    timestep_ratio=1.0,
    teacher_ratio_decay=1000,
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
train_cfg = dict(max_iters=15000)
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
            'a neon sign that reads "ArcFlow" above a cafe door',
        ],
        seeds=(0, 1),
        vae="Qwen/Qwen-Image",
    ),
]
