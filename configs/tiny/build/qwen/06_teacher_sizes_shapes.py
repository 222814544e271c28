# 05 trained on with every caption stating each object's size and the scenes of the shapes it
# missed drawn more often: the shipped teacher (checkpoints/tiny-qwen/transformer/).
_base_ = ["../../_base_/teacher_qwen.py"]
_stage = dict(kind="teacher", start="05_teacher_lr_restart")

model = dict(shift=1.0)
optim_wrapper = dict(optimizer=dict(lr=3e-4))
train_dataloader = dict(
    dataset=dict(repeat={"circle": 2, "large star": 3, "large cross": 2}, size_omitted=0.0)
)
