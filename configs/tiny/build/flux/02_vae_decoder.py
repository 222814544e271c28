# The FLUX VAE's decoder refined on fresh scenes, encoder fixed; exported into
# checkpoints/tiny-flux/vae/.
_base_ = ["../../_base_/vae_decoder.py"]
_stage = dict(kind="decoder", start="01_vae")

model = dict(arch="flux")
train_dataloader = dict(dataset=dict(seed=11))
train_cfg = dict(max_iters=5600)
