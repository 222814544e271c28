# Distil FLUX.1-dev into a 2-NFE ArcFlow student with the released recipe (docs/method.md,
# Distillation and Optimisation).
#   python tools/train.py configs/flux/arcflow_flux.py
#   torchrun --nproc_per_node=8 tools/train.py configs/flux/arcflow_flux.py --launcher pytorch
# Prompts: one per line in data/prompts/train.txt (or point train_dataloader.dataset.prompts
# elsewhere); the released run used ~2.3 M prompts.
_base_ = ["../_base_/models/flux_student.py", "../_base_/recipes/arcflow_2nfe.py"]

model = dict(
    prompt_encoder=dict(
        arch="flux",
        pretrained="black-forest-labs/FLUX.1-dev",
        max_sequence_length=512,
        torch_dtype="bfloat16",
    ),
    teacher_ratio_decay=2000,
)
train_cfg = dict(max_iters=10000)
