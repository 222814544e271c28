# Stage B3 of the tiny FLUX teacher (measured, not shipped; not a stage of
# tools/build_tiny_world.py): the shipped teacher (stage B2) trained on to regress the
# classifier-free-guided velocity of the conditional stage A7 (teacher_tiny_flux_recondition.py,
# exported to checkpoints/tiny-flux-stage-a7/) instead of A6's, on A7's captions and scenes.
# Measured 2026-11-27 on the build's 200 held-out one-object prompts at embedded guidance 7:
# 68.0 % (large stars 4 of 21; mean loss over the last 300 iterations 0.62, B2's 0.92), against
# 80.5 % for A7 itself under true CFG 7 and 70.5 % for B2: guidance distillation loses what A7
# gained. Started from A7 instead (--cfg-options
# model.transformer.from_pretrained=checkpoints/tiny-flux-stage-a7): 70.5 % (large stars 6 of
# 21), same loss. 1500 iterations, 23 min alone here (2 threads).
_base_ = ["./teacher_tiny_flux_guidance_a6.py"]

model = dict(
    transformer=dict(from_pretrained="checkpoints/tiny-flux"),
    cfg_teacher=dict(transformer=dict(from_pretrained="checkpoints/tiny-flux-stage-a7")),
)
