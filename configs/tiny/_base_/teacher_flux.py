# The tiny FLUX teacher: guidance-embedded as FLUX.1-dev, fed the fixed guidance 1.0 ("no
# guidance") while it learns the conditional velocity; the guidance stages distil CFG into it.
_base_ = ["./teacher.py"]

_stack = "checkpoints/tiny-flux"
model = dict(arch="flux", pretrained=_stack, max_sequence_length=32, guidance_scale=1.0)
train_dataloader = dict(dataset=dict(pretrained=_stack, size=32768, seed=3))
# Checkpoints every 500 iterations (the tiny runtime: every 200).
custom_hooks = [
    dict(type="ArcFlowEMAHook", gamma=7.0, start_iter=50),
    dict(type="ArcFlowCheckpointHook", interval=500, keep_last=1, keep_every=0),
    dict(type="ThroughputHook"),
]
