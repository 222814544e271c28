# The data variant of configs/qwen/arcflow_qwen.py: each iteration noises the latents of real
# captioned images to the start of one student segment drawn at random and imitates the teacher
# from there, instead of rolling the student out from pure noise (configs/tiny/
# arcflow_tiny_flux_data.py is the FLUX variant at tiny size).
#   data/images/train.jsonl: one {"image": "<path relative to the file>", "prompt": "..."} a line
#   python tools/train.py configs/qwen/arcflow_qwen_data.py
# The images are encoded once by Qwen-Image's VAE (centre-cropped to 1024 x 1024) into
# work_dirs/latent_cache/ and held in memory (0.5 MB an image at 1024 x 1024).
_base_ = ["./arcflow_qwen.py"]

model = dict(mode="data")
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type="ImageLatentDataset",
        pretrained="Qwen/Qwen-Image",
        records="data/images/train.jsonl",
        resolution=1024,
    ),
)
