# A conditional stage again, from 10 (at guidance 1 it gives 09's conditional velocity): fixed
# guidance 1, text dropout, 09's scenes and captions, a longer run.
_base_ = ["../../_base_/teacher_flux.py"]
_stage = dict(kind="teacher", start="10_guidance_retarget")

model = dict(shift=1.0)
optim_wrapper = dict(optimizer=dict(lr=3e-4))
train_dataloader = dict(dataset=dict(repeat={"large star": 3, "star": 2}, size_omitted=0.0))
