# The linear-shortcut baseline of arcflow_tiny_flux.py: K = 1 (one constant-velocity component per
# step, the 2-step Euler shortcut), everything else and the training budget identical. This config
# made checkpoints/tiny-flux-linear.
_base_ = ["./arcflow_tiny_flux.py"]

model = dict(student=dict(num_components=1))
# K = 1 has no log-rate head, so no lr multiplier for it.
optim_wrapper = dict(paramwise_cfg=dict(_delete_=True, prefer_8bit=False))
