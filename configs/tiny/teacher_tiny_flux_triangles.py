# Stage A9 of the tiny FLUX teacher: the conditional stage A8 trained on for 2500 iterations on
# scenes it has not seen (dataset seed 5), with large-triangle scenes drawn 3x besides A6's star
# repeats. B4's largest loss was size on held-out combinations, most of it large triangles drawn
# small (a (colour, triangle, position) that training shows only small came out small whatever
# the prompt said); more large triangles at the positions training does show teach the size word
# to bind to the shape. 41 min here (1 thread, one other run beside it). Measured 2026-11-27 on
# the build's 200 held-out one-object prompts and noises under true CFG 7 (empty negative prompt,
# embedded guidance 1): 94.0 % (A8: 81.5 %; size 98.6 % against 87.9 % for B4, large triangles 13
# of 14, large stars 19 of 21). The same on 65536 scenes of seed 6 measured 91.0 %. Stage B5
# (teacher_tiny_flux_guidance_a9.py) distils its guidance.
_base_ = ["./teacher_tiny_flux_fresh.py"]

model = dict(transformer=dict(from_pretrained="checkpoints/tiny-flux-stage-a8"))
train_dataloader = dict(
    dataset=dict(seed=5, repeat={"large star": 3, "star": 2, "large triangle": 3})
)
train_cfg = dict(max_iters=2500)
