# Distil FLUX.1 Kontext [dev] into a 2-NFE ArcFlow editor with FLUX.1-dev's released recipe: the
# teacher edits each image as its instruction says (embedded guidance 2.5, Kontext's own), the
# student learns to follow that trajectory in 2 steps. Data-free for the edited images: only
# the images to edit and their instructions are needed.
#   data/edits/train.jsonl: one {"image": "<path relative to the file>", "instruction": "..."} a
#   line (arcflow.tinyworld.edits.write_edit_pairs writes this format from the tiny world)
#   python tools/train.py configs/flux_kontext/arcflow_flux_kontext.py
# The images are encoded once by the VAE (centre-cropped to 1024 x 1024) into
# work_dirs/latent_cache/; each edited image is drawn at its source's size.
_base_ = ["../flux/arcflow_flux.py"]

_model = "black-forest-labs/FLUX.1-Kontext-dev"
model = dict(
    student=dict(
        arch="flux_kontext",
        transformer=dict(from_pretrained=_model),
        guidance_scale=2.5,
    ),
    prompt_encoder=dict(arch="flux_kontext", pretrained=_model),
)
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type="EditImageDataset",
        pretrained=_model,
        records="data/edits/train.jsonl",
        resolution=1024,
    ),
)
