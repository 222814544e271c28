# Stage A3 of the tiny Qwen-Image teacher, as for FLUX (teacher_tiny_flux_refine.py): stage A2
# continued at the same noise levels (shift 1) after a warm restart of the learning rate (A2's
# cosine has decayed to 5 % by its end). Starts from stage A2's export
# (checkpoints/tiny-qwen-stage-a2/, float32); exported to checkpoints/tiny-qwen-stage-a3/ for
# stage A4 (teacher_tiny_qwen_shapes.py). 3000 iterations (27 min here, one other job beside
# it): on the same 100 prompts and noises at true CFG 4, caption match 36 -> 42 % and shape
# 53 -> 61 % against stage A2 (squares 21 vs 13 of 25; stars, 7 of 26, are drawn as circles most
# often).
# Those figures are on the latents of the first VAE (600-iteration encoder stage); on the current
# VAE's the A -> A2 -> A3 chain reaches 73.5 % on the build's 200 held-out one-object prompts
# (37.0 % before; 22 min here with 2 threads).
_base_ = ["./teacher_tiny_qwen_detail.py"]

model = dict(
    transformer=dict(from_pretrained="checkpoints/tiny-qwen-stage-a2", subfolder="transformer"),
)
optim_wrapper = dict(optimizer=dict(lr=3e-4))  # A2's 3000-iteration schedule, lower peak
