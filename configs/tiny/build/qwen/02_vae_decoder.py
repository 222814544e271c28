# The Qwen-Image VAE's decoder refined on fresh scenes, encoder fixed; exported into
# checkpoints/tiny-qwen/vae/.
_base_ = ["../../_base_/vae_decoder.py"]
_stage = dict(kind="decoder", start="01_vae")

model = dict(arch="qwen_image")
train_dataloader = dict(dataset=dict(seed=12))
train_cfg = dict(max_iters=2000)
