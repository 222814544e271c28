# The VAE's decoder refined alone, from the stack's VAE (model.pretrained, handed in by
# tools/build_tiny_world.py): the encoder stays fixed, so the latents teachers train on stay valid.
_base_ = ["./vae.py"]

model = dict(train_encoder=False)
optim_wrapper = dict(optimizer=dict(lr=5e-4))
