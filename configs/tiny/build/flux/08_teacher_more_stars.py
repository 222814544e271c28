# 06 trained on with the scenes holding a large star drawn 3x per epoch, a small star 2x.
_base_ = ["../../_base_/teacher_flux.py"]
_stage = dict(kind="teacher", start="06_teacher_deepen")

model = dict(shift=1.0)
optim_wrapper = dict(optimizer=dict(lr=3e-4))
train_dataloader = dict(dataset=dict(repeat={"large star": 3, "star": 2}))
train_cfg = dict(max_iters=2000)
