# Decoder refinement of the tiny FLUX VAE, from checkpoints/tiny-flux/vae/: the encoder stays
# fixed, so the latents (and a teacher trained on them) stay valid while the reconstructions
# improve. tools/build_tiny_world.py runs it after the VAE export.
_base_ = ["./vae_tiny_flux.py"]

model = dict(pretrained="checkpoints/tiny-flux", train_encoder=False)
optim_wrapper = dict(optimizer=dict(lr=5e-4))
train_dataloader = dict(dataset=dict(seed=11))
