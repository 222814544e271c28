# 11 trained on on a fresh set of scenes (dataset seed 4; every earlier stage drew seed 3).
_base_ = ["../../_base_/teacher_flux.py"]
_stage = dict(kind="teacher", start="11_teacher_recondition")

model = dict(shift=1.0)
optim_wrapper = dict(optimizer=dict(lr=3e-4))
train_dataloader = dict(dataset=dict(seed=4, repeat={"large star": 3, "star": 2}, size_omitted=0.0))
train_cfg = dict(max_iters=2000)
