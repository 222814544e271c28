# The released FLUX.1-dev ArcFlow student (docs/method.md, The student): K = 16, LoRA rank/alpha 256
# on the MLPs and the timestep embedder, teacher and student at embedded guidance 3.5.
_base_ = ["./arcflow_distiller.py"]

model = dict(
    student=dict(
        arch="flux",
        transformer=dict(
            from_config="full",
            from_pretrained="black-forest-labs/FLUX.1-dev",
            subfolder="transformer",
            torch_dtype="bfloat16",
        ),
        num_components=16,
        lora_rank=256,
        lora_alpha=256,
        lora_dropout=0.05,
        lora_init="gaussian",
        guidance_scale=3.5,
        mean_bias_noise_std=0.05,
        init_seed=0,
        gradient_checkpointing=True,
        trainable_dtype="float32",
    ),
)
