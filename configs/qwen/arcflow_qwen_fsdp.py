# configs/qwen/arcflow_qwen.py under FSDP (one shard unit per transformer block) instead of DDP:
#   torchrun --nproc_per_node=8 tools/train.py configs/qwen/arcflow_qwen_fsdp.py --launcher pytorch
_base_ = ["./arcflow_qwen.py", "../_base_/distributed/fsdp.py"]
