# 04 continued at the same noise levels after a warm restart of the learning rate, which 04's
# cosine had decayed to 5 %.
_base_ = ["../../_base_/teacher_flux.py"]
_stage = dict(kind="teacher", start="04_teacher_low_noise")

model = dict(shift=1.0)
optim_wrapper = dict(optimizer=dict(lr=3e-4))
train_cfg = dict(max_iters=6000)
