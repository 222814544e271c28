# The data variant of configs/tiny/arcflow_tiny_flux.py: each iteration noises real latents (the
# tiny VAE's encodings of training scenes) to the start of one student segment drawn at random
# and imitates the teacher from there, instead of rolling the student out from pure noise. The
# scenes are the caption stream of the data-free run (seed 5), encoded once by the stack's VAE and
# cached under work_dirs/latent_cache/ (~30 s for 4096 scenes).
_base_ = ["./arcflow_tiny_flux.py"]

model = dict(mode="data")
train_dataloader = dict(
    sampler=dict(type="InfiniteSampler", shuffle=True),
    dataset=dict(
        _delete_=True,
        type="SceneLatentDataset",
        pretrained="checkpoints/tiny-flux",
        size=4096,
        seed=5,
    ),
)
