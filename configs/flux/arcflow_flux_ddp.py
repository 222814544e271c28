# configs/flux/arcflow_flux.py with the DDP wrapper spelled out (plain configs under torchrun
# get the same wrapper by default):
#   torchrun --nproc_per_node=8 tools/train.py configs/flux/arcflow_flux_ddp.py --launcher pytorch
_base_ = ["./arcflow_flux.py", "../_base_/distributed/ddp.py"]
