# Stage A4 of the tiny FLUX teacher: stage A3 grown from 2 to 4 single-stream blocks and trained on
# (shift 1, learning-rate restart). Each single block is followed by a copy of itself whose output
# projection is zero (arcflow/models/growth.py), so training starts from exactly stage A3's
# velocities with 27 % more parameters where A3 ran short of capacity: further A2-style training
# had fixed squares and triangles but left large stars drawn as crosses. Starts from stage A3's
# export (checkpoints/tiny-flux-stage-a3/); exported to checkpoints/tiny-flux-stage-a4/ for stage B.
# 2500 iterations (34.5 min here, ~1.45x A3's time per iteration): sampled with true CFG 7 on the
# same 100 held-out one-object prompts, 73 % caption match against stage A3's 69 % (stars 7 vs 4 of
# 26). Stage B keeps the gain when it runs long enough (teacher_tiny_flux_guidance.py).
_base_ = ["./teacher_tiny_flux_refine.py"]

model = dict(
    transformer=dict(
        from_config=dict(num_single_layers=4),  # the grown model
        from_pretrained="checkpoints/tiny-flux-stage-a3",
        subfolder="transformer",
        deepen=2,
    ),
)
train_cfg = dict(max_iters=2500)
