# The tiny Qwen-Image teacher: no embedded guidance; sampled with true CFG 4 and the empty
# negative prompt, as Qwen-Image is. Half FLUX's scene count: its video VAE encodes ~4x slower.
_base_ = ["./teacher.py"]

_stack = "checkpoints/tiny-qwen"
model = dict(arch="qwen_image", pretrained=_stack, max_sequence_length=64, guidance_scale=None)
train_dataloader = dict(dataset=dict(pretrained=_stack, size=16384, seed=6))
