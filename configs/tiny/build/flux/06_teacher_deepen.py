# 05 grown to twice its single-stream blocks, each new one a copy whose output projection is zero
# (the same velocities at the start, arcflow/models/growth.py), and trained on.
_base_ = ["../../_base_/teacher_flux.py"]
_stage = dict(kind="teacher", start="05_teacher_lr_restart")

model = dict(transformer=dict(deepen=2), shift=1.0)
optim_wrapper = dict(optimizer=dict(lr=3e-4))
train_cfg = dict(max_iters=2500)
