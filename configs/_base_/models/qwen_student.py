# The released Qwen-Image ArcFlow student (docs/method.md, The student): K = 16, LoRA rank/alpha 256
# on the MLPs (text MLP of the last block excluded) and the timestep embedder; the teacher uses true
# CFG 4.0 with the empty negative prompt, the student runs without CFG.
_base_ = ["./arcflow_distiller.py"]

model = dict(
    student=dict(
        arch="qwen_image",
        transformer=dict(
            from_config="full",
            from_pretrained="Qwen/Qwen-Image",
            subfolder="transformer",
            torch_dtype="bfloat16",
        ),
        num_components=16,
        lora_rank=256,
        lora_alpha=256,
        lora_dropout=0.05,
        lora_init="gaussian",
        guidance_scale=4.0,
        mean_bias_noise_std=0.05,
        init_seed=0,
        gradient_checkpointing=True,
        trainable_dtype="float32",
    ),
)
