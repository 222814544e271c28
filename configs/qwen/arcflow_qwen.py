# Distil Qwen-Image into a 2-NFE ArcFlow student with the released recipe (docs/method.md,
# Distillation and Optimisation).
# The teacher runs true CFG 4.0 with the empty negative prompt; the student runs without CFG.
#   python tools/train.py configs/qwen/arcflow_qwen.py
#   torchrun --nproc_per_node=8 tools/train.py configs/qwen/arcflow_qwen.py --launcher pytorch
_base_ = ["../_base_/models/qwen_student.py", "../_base_/recipes/arcflow_2nfe.py"]

model = dict(
    prompt_encoder=dict(
        arch="qwen_image",
        pretrained="Qwen/Qwen-Image",
        max_sequence_length=1024,
        torch_dtype="bfloat16",
        negative_prompt="",
    ),
    teacher_ratio_decay=1000,
)
train_cfg = dict(max_iters=15000)
