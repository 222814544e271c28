# Ablation of the number of momentum components: arcflow_tiny_flux.py with K = 4 instead of 16
# (linear_tiny_flux.py is K = 1), everything else and the training budget identical.
_base_ = ["./arcflow_tiny_flux.py"]

model = dict(student=dict(num_components=4))
