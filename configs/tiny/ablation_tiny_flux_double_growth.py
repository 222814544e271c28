# A second growth step for the tiny FLUX teacher, tried after stage A4: stage A4 grown from 2 to 4
# double-stream blocks (transformer.deepen=dict(transformer_blocks=2): each followed by a copy of
# itself whose output projections are zero, arcflow/models/growth.py) and trained on like A4
# (shift 1, learning-rate restart), 2000 iterations (36 min here, 1.3x A4's time per iteration).
# The double-stream blocks are where the image tokens read the caption through projections of
# their own; A4 grew only the single-stream stack. Measured 2026-11-26 with true CFG 7 on the 100
# held-out one-object prompts and noises of the A3 / A4 comparison: 73 % caption match, the same as
# stage A4 (stars 6 of 26 against 7; shape 77 %). Not adopted: 2000 more iterations with twice the
# double-stream depth bought no caption match over A4.
_base_ = ["./teacher_tiny_flux_refine.py"]

model = dict(
    transformer=dict(
        from_config=dict(num_layers=4, num_single_layers=4),  # the grown model
        from_pretrained="checkpoints/tiny-flux-stage-a4",
        subfolder="transformer",
        deepen=dict(transformer_blocks=2),
    ),
)
train_cfg = dict(max_iters=2000)
