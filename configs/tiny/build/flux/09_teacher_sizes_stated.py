# 08 trained on with every caption stating each object's size, so that held-out prompts' sizes
# bind to the size words instead of to the (colour, shape, position) seen in training.
_base_ = ["../../_base_/teacher_flux.py"]
_stage = dict(kind="teacher", start="08_teacher_more_stars")

model = dict(shift=1.0)
optim_wrapper = dict(optimizer=dict(lr=3e-4))
train_dataloader = dict(dataset=dict(repeat={"large star": 3, "star": 2}, size_omitted=0.0))
train_cfg = dict(max_iters=2000)
