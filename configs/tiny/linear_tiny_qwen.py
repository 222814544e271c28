# The linear-shortcut baseline of arcflow_tiny_qwen.py: K = 1, same budget. It made
# checkpoints/tiny-qwen-linear.
_base_ = ["./arcflow_tiny_qwen.py"]

model = dict(student=dict(num_components=1))
# K = 1 has no log-rate head, so no lr multiplier for it.
optim_wrapper = dict(paramwise_cfg=dict(_delete_=True, prefer_8bit=False))
