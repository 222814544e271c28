# DDP (launch with torchrun ... --launcher pytorch): NCCL on CUDA, gloo on CPU.
model_wrapper_cfg = dict(type="ArcFlowDDP", find_unused_parameters=False)
