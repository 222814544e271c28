# Decoder refinement of the tiny Qwen-Image VAE, from checkpoints/tiny-qwen/vae/: the encoder stays
# fixed, so the latents (and a teacher trained on them) stay valid while the reconstructions
# improve. tools/build_tiny_world.py runs it after the VAE export.
_base_ = ["./vae_tiny_qwen.py"]

model = dict(pretrained="checkpoints/tiny-qwen", train_encoder=False)
optim_wrapper = dict(optimizer=dict(lr=5e-4))
train_dataloader = dict(dataset=dict(seed=12))
