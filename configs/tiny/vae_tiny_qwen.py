# The tiny Qwen-Image stack's AutoencoderKLQwenImage (64x64 RGB -> 16x16x16), trained as the FLUX
# one (vae_tiny_flux.py) on other scenes, for 1500 iterations instead of 600: the video VAE's
# latents settle more slowly. With the same decoder refinement after it (vae_tiny_qwen_decoder.py),
# 600 iterations left the reconstructions at 71.5-78 % caption match on 200 held-out one-object
# scenes (35.6 dB; small squares and large stars lost), 1500 reach 99.5 % (40.5 dB; measured on an
# H200, 2026-11-27, docs/tiny_world.md). tools/build_tiny_world.py exports its EMA weights, with
# the measured per-channel latent statistics, into checkpoints/tiny-qwen/vae/.
_base_ = ["./vae_tiny_flux.py"]

model = dict(arch="qwen_image")
train_dataloader = dict(dataset=dict(seed=2))
train_cfg = dict(max_iters=1500)
