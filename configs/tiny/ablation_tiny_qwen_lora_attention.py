# Ablation of the LoRA targets: arcflow_tiny_qwen.py with the attention projections adapted too
# (lora_attention=True; the released students adapt the MLPs and the timestep embedder only), at
# the same budget. True CFG changes what the image tokens attend to, which MLP adapters can only
# approximate. Measured 2026-11-26 (200 held-out one-object prompts, one seed, the stage-A2 teacher
# 814136209d42): 22.5 % caption match against 25.0 % with the released targets (within the noise
# of 200 images; shape 40.5 vs 38.5 %, count 81.5 vs 77.5 %, colour 69.5 vs 71.5 %), although the
# imitation loss is 18 % lower (mean over iterations 401-800: 4.62 against 5.68). Not adopted.
_base_ = ["./arcflow_tiny_qwen.py"]

model = dict(student=dict(lora_attention=True))
