# The tiny Qwen-Image stack's AutoencoderKLQwenImage (64x64 RGB -> 16x16x16), trained exactly as the
# FLUX one (vae_tiny_flux.py) on other scenes. tools/build_tiny_world.py exports its EMA weights,
# with the measured per-channel latent statistics, into checkpoints/tiny-qwen/vae/.
_base_ = ["./vae_tiny_flux.py"]

model = dict(arch="qwen_image")
train_dataloader = dict(dataset=dict(seed=2))
