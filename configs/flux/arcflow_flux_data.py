# The data variant of configs/flux/arcflow_flux.py: each iteration noises the latents of real
# captioned images to the start of one student segment drawn at random and imitates the teacher
# from there, instead of rolling the student out from pure noise (configs/tiny/
# arcflow_tiny_flux_data.py is the same at tiny size).
#   data/images/train.jsonl: one {"image": "<path relative to the file>", "prompt": "..."} a line
#   python tools/train.py configs/flux/arcflow_flux_data.py
# The images are encoded once by FLUX.1-dev's VAE (centre-cropped to 1024 x 1024) into
# work_dirs/latent_cache/ and held in memory (0.5 MB an image).
_base_ = ["./arcflow_flux.py"]

model = dict(mode="data")
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type="ImageLatentDataset",
        pretrained="black-forest-labs/FLUX.1-dev",
        records="data/images/train.jsonl",
        resolution=1024,
    ),
)
