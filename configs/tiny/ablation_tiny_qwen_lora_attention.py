# Ablation of the LoRA targets: arcflow_tiny_qwen.py with the attention projections adapted too
# (lora_attention=True; the released students adapt the MLPs and the timestep embedder only), at
# the same budget. True CFG changes what the image tokens attend to, which MLP adapters can only
# approximate.
_base_ = ["./arcflow_tiny_qwen.py"]

model = dict(student=dict(lora_attention=True))
