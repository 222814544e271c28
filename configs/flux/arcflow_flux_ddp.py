# configs/flux/arcflow_flux.py with the DDP wrapper spelled out (torchrun runs of the plain config get
# the same wrapper by default):
#   torchrun --nproc_per_node=8 tools/train.py configs/flux/arcflow_flux_ddp.py --launcher pytorch
_base_ = ["./arcflow_flux.py", "../_base_/distributed/ddp.py"]
