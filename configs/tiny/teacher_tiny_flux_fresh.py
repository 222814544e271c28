# Stage A8 of the tiny FLUX teacher: the conditional stage A7 trained on for 2000 iterations on a
# fresh set of 32768 scenes (dataset seed 4; every earlier stage drew seed 3, ~25 passes over the
# same scenes by the end of A7), with A6's star repeats and stated sizes. 35 min here (1 thread,
# one other run beside it). Measured 2026-11-27 on the build's 200 held-out one-object prompts and
# noises, sampled with true CFG 7 (empty negative prompt, embedded guidance 1): 81.5 % (A7: 80.5 %;
# A7 at CFG 4: 80.0 %, at 10: 78.0 %). Stage B4 (teacher_tiny_flux_guidance_a8.py) distils it.
_base_ = ["./teacher_tiny_flux_recondition.py"]

model = dict(transformer=dict(from_pretrained="checkpoints/tiny-flux-stage-a7"))
train_dataloader = dict(dataset=dict(seed=4))
train_cfg = dict(max_iters=2000)
