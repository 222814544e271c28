# Stage A2 of the tiny Qwen-Image teacher, as for FLUX (teacher_tiny_flux_detail.py): the
# conditional model of teacher_tiny_qwen.py continued at the plain logit-normal noise levels
# (shift 1), where the objects' shapes and clean backgrounds form. Starts from stage A's export
# (checkpoints/tiny-qwen-stage-a/, float32); exported to checkpoints/tiny-qwen-stage-a2/ for stage
# A3. 3000 iterations (28.5 min here): on 100 held-out one-object prompts at true CFG 4, caption
# match 20 -> 36 % and shape 31 -> 53 % against stage A alone.
_base_ = ["./teacher_tiny_qwen.py"]

model = dict(
    transformer=dict(from_pretrained="checkpoints/tiny-qwen-stage-a", subfolder="transformer"),
    shift=1.0,
)
optim_wrapper = dict(optimizer=dict(lr=5e-4))
train_cfg = dict(max_iters=3000)
