# Growing the tiny Qwen-Image teacher, tried after stage A3 as FLUX's stage A4 was
# (teacher_tiny_flux_deep.py): stage A3 grown from 4 to 8 dual-stream blocks (each followed by a
# copy of itself whose output projections are zero, arcflow/models/growth.py) and trained on at
# A3's noise levels after a learning-rate restart, 1500 iterations (27 min here, 2x A3's time
# per iteration). Starts from stage A3's export (checkpoints/tiny-qwen-stage-a3/). Measured
# 2026-11-26 with true CFG 4 on the 100 held-out one-object prompts and noises of the A2 / A3
# comparison: 39 % caption match against A3's 42 % (shape 54 vs 61 %, count 94 vs 91 %). Not
# adopted.
_base_ = ["./teacher_tiny_qwen_refine.py"]

model = dict(
    transformer=dict(
        from_config=dict(num_layers=8),  # the grown model
        from_pretrained="checkpoints/tiny-qwen-stage-a3",
        deepen=2,
    ),
)
train_cfg = dict(max_iters=1500)
