# Guidance distillation, as FLUX.1-dev was made: at embedded guidance g ~ U[1, 10] the trained
# model regresses the classifier-free-guided velocity u_neg + g (u_pos - u_neg) of a frozen
# conditional teacher (model.cfg_teacher.transformer, handed in by tools/build_tiny_world.py).
_base_ = ["./teacher_flux.py"]

model = dict(
    cfg_teacher=dict(guidance_scale=1.0),
    guidance_range=(1.0, 10.0),
    text_dropout=0.0,
    guidance_scale=None,
)
optim_wrapper = dict(optimizer=dict(lr=3e-4))
train_cfg = dict(max_iters=3000)
