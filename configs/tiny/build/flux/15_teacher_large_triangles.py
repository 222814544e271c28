# 13 trained on on unseen scenes (seed 5) with large-triangle scenes also drawn 3x, so that the
# size word binds to the shape where training shows a triangle only small.
_base_ = ["../../_base_/teacher_flux.py"]
_stage = dict(kind="teacher", start="13_teacher_fresh_scenes")

model = dict(shift=1.0)
optim_wrapper = dict(optimizer=dict(lr=3e-4))
train_dataloader = dict(
    dataset=dict(seed=5, repeat={"large star": 3, "star": 2, "large triangle": 3}, size_omitted=0.0)
)
train_cfg = dict(max_iters=2500)
