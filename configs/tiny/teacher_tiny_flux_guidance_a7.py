# Stage B3 of the tiny FLUX teacher (shipped until stage B4): the conditional stage A7
# (teacher_tiny_flux_recondition.py) guidance-distilled, started from A7 itself, which embeds
# guidance 1 only and so learns the guidance input again over g ~ U[1, 10] (B's range), drawn per
# sample: the guided target grows with g, and with one draw per iteration (stages B / B2) the loss
# jumped 20-fold between iterations (0.07 to 1.8 in the log) and Adam's step sizes followed the
# loud ones. 3000 iterations (50 min here, 2 threads; mean loss over the last 300 iterations 0.71).
# Measured 2026-11-27 on the build's 200 held-out one-object prompts and noises at embedded
# guidance 7: 73.5 % (shape 81.0 %, large stars 4 of 21; guidance 5 / 10: 73.5 / 74.0 %), against
# 80.5 % for A7 under true CFG 7 and 70.5 % for B2. With one guidance draw per iteration and 1500
# iterations: 70.5 % from A7, 68.0 % from B2 (both final losses 0.62), so guidance distillation
# still loses part of what A7 gained; 1500 more iterations from B3 (loss 0.62) measured 71.0 %.
_base_ = ["./teacher_tiny_flux_guidance_a6.py"]

model = dict(
    transformer=dict(from_pretrained="checkpoints/tiny-flux-stage-a7"),
    cfg_teacher=dict(transformer=dict(from_pretrained="checkpoints/tiny-flux-stage-a7")),
    guidance_per_sample=True,
)
train_cfg = dict(max_iters=3000)
