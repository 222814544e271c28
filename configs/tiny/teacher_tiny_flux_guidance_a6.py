# Stage B2 of the tiny FLUX teacher (the shipped one until stage B3): stage B
# (checkpoints/tiny-flux-stage-b/) trained on to regress the classifier-free-guided velocity of
# stage A6 instead of A4, on the captions and star-rich scenes of A6 (every size stated: captions
# that leave a size out would teach the held-out combinations' sizes back through A6's own
# guesses). B already embeds A4's guidance and A6 differs from A4 mostly on stars and sizes, so a
# shorter run than B's 3000 iterations carries the change. 1500 iterations (31 min here; mean
# loss over the last 300 iterations 0.92, B's 0.90). Build evaluation (200 held-out one-object
# prompts, embedded guidance 7): caption match 70.5 % against 60.5 % for stage B (shape 79.0 vs
# 69.5 %, size 85.0 vs 82.9 %).
_base_ = ["./teacher_tiny_flux_guidance.py"]

model = dict(
    transformer=dict(from_pretrained="checkpoints/tiny-flux-stage-b"),
    cfg_teacher=dict(transformer=dict(from_pretrained="checkpoints/tiny-flux-stage-a6")),
)
train_dataloader = dict(dataset=dict(repeat={"large star": 3, "star": 2}, size_omitted=0.0))
train_cfg = dict(max_iters=1500)
