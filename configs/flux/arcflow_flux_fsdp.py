# configs/flux/arcflow_flux.py under FSDP (one shard unit per transformer block) instead of DDP:
#   torchrun --nproc_per_node=8 tools/train.py configs/flux/arcflow_flux_fsdp.py --launcher pytorch
_base_ = ["./arcflow_flux.py", "../_base_/distributed/fsdp.py"]
