# The tiny FLUX stack's AutoencoderKL (64x64 RGB -> 16x16x16), exported with its measured latent
# scale into checkpoints/tiny-flux/vae/.
_base_ = ["../../_base_/vae.py"]
_stage = dict(kind="vae")

model = dict(arch="flux")
train_dataloader = dict(dataset=dict(seed=1))
