# FSDP: shards the frozen base with the trainable tensors, one unit per transformer block, far
# below DDP's ~65-70 GB per GPU. use_orig_params keeps LoRA and head names for checkpoints.
model_wrapper_cfg = dict(
    type="ArcFlowFSDP",
    use_orig_params=True,
    auto_wrap_policy="arcflow_transformer_blocks",
)
