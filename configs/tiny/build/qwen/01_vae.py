# The tiny Qwen-Image stack's AutoencoderKLQwenImage (64x64 RGB -> 16x16x16), exported with its
# measured per-channel latent statistics into checkpoints/tiny-qwen/vae/. Its latents settle more
# slowly than FLUX's, hence the longer run.
_base_ = ["../../_base_/vae.py"]
_stage = dict(kind="vae")

model = dict(arch="qwen_image")
train_dataloader = dict(dataset=dict(seed=2))
train_cfg = dict(max_iters=1500)
