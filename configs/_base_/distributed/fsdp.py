# FSDP2 (torch's fully_shard; torchrun ... --launcher pytorch, NCCL on CUDA, gloo on CPU): one shard
# unit per transformer block plus one for the rest of the transformer, the frozen base sharded with
# the trainable tensors, far below DDP's ~65-70 GB per GPU. Checkpoints hold whole tensors under
# their unsharded names: they resume under DDP or in one process too, and export as usual.
# Mixed precision, off here as under DDP: param_dtype="bfloat16" computes in bfloat16,
# reduce_dtype="float32" reduces gradients in float32.
model_wrapper_cfg = dict(type="ArcFlowFSDP")
