# Distil FLUX.2 [klein] base 4B into a 2-NFE ArcFlow student with the released recipe of
# FLUX.1-dev and Qwen-Image (docs/method.md, Distillation and Optimisation); the teacher runs true
# CFG 4.0 (Flux2KleinPipeline's default for the base models) with the empty negative prompt.
#   python tools/train.py configs/flux2/arcflow_flux2_klein.py
# The step-distilled klein checkpoints are few-step models already: distil the base ones.
_base_ = ["../_base_/models/flux2_klein_student.py", "../_base_/recipes/arcflow_2nfe.py"]

model = dict(
    prompt_encoder=dict(
        arch="flux2_klein",
        pretrained="black-forest-labs/FLUX.2-klein-base-4B",
        max_sequence_length=512,
        torch_dtype="bfloat16",
        negative_prompt="",
    ),
    teacher_ratio_decay=1000,
)
train_cfg = dict(max_iters=10000)
