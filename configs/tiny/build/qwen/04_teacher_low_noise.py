# 03 continued at the plain logit-normal noise levels (shift 1), where the objects' shapes form.
_base_ = ["../../_base_/teacher_qwen.py"]
_stage = dict(kind="teacher", start="03_teacher_high_noise")

model = dict(shift=1.0)
optim_wrapper = dict(optimizer=dict(lr=5e-4))
train_cfg = dict(max_iters=3000)
