# Stage A6 of the tiny FLUX teacher: stage A5 trained on with every caption stating each object's
# size. Held-out prompts name (colour, shape, size, position) combinations absent from training; a
# (colour, shape, position) seen with one size only is drawn at that size in every training
# caption that leaves the size out (a quarter of them), and stage A5 drew it so whatever size the
# prompt stated: on 200 held-out one-object prompts (true CFG 7) it drew the stated size 88 % of
# the time (small squares 17 of 29), against ~95 % on training combinations. Starts from stage
# A5's export (checkpoints/tiny-flux-stage-a5/); exported to checkpoints/tiny-flux-stage-a6/ for
# stage B2. 2000 iterations (27.5 min): 75.0 % caption match under true CFG 7 (A5: 72.5 %), but
# size accuracy moved only 87.9 -> 88.6 % (small squares 20 of 29): the gain is the stars' (large
# 6 of 32, small 12 of 19) as much as the captions'; the control (A5 trained on with the default
# captions) was not run.
_base_ = ["./teacher_tiny_flux_stars.py"]

model = dict(transformer=dict(from_pretrained="checkpoints/tiny-flux-stage-a5"))
train_dataloader = dict(dataset=dict(size_omitted=0.0))
