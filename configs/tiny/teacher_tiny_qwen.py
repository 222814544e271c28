# Stage A of the tiny Qwen-Image teacher: conditional flow matching with 10% text dropout (the
# caption replaced by the empty prompt), so that it supports true classifier-free guidance at
# sampling time (scale 4.0 with the empty negative prompt, as Qwen-Image is used). No embedded
# guidance. Stage A2 (teacher_tiny_qwen_detail.py) continues it at mid and low noise.
# Needs checkpoints/tiny-qwen/ with the text side and the trained VAE (tools/build_tiny_world.py).
_base_ = ["./_tiny_runtime.py"]

_transformer = dict(
    patch_size=2,
    in_channels=64,
    out_channels=16,
    num_layers=4,
    attention_head_dim=32,
    num_attention_heads=6,
    joint_attention_dim=64,
    axes_dims_rope=(8, 12, 12),
)
model = dict(
    type="FlowMatchingTrainer",
    arch="qwen_image",
    transformer=dict(from_config=_transformer),
    pretrained="checkpoints/tiny-qwen",
    max_sequence_length=64,
    text_dropout=0.1,
    timestep_sampling="logit_normal",
    shift=3.0,  # as the FLUX teacher: the sampler grid (shift 3.2) dwells at high noise
    guidance_scale=None,
    object_weight=4.0,
)
train_dataloader = dict(
    batch_size=32,
    num_workers=0,
    sampler=dict(type="InfiniteSampler", shuffle=True),
    collate_fn=dict(type="default_collate"),
    # Pre-encoded by the stack's VAE once (cached under work_dirs/latent_cache/): the video VAE's
    # encoder would otherwise cost more than the transformer every iteration. Half FLUX's scene
    # count, as that encoder is ~4x slower.
    dataset=dict(type="SceneLatentDataset", pretrained="checkpoints/tiny-qwen", size=16384, seed=6),
)
train_cfg = dict(max_iters=4000)
