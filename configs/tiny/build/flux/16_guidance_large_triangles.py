# 14 trained on towards the guided velocity of 15, on 15's scenes: the shipped teacher
# (checkpoints/tiny-flux/transformer/).
_base_ = ["../../_base_/guidance_flux.py"]
_stage = dict(
    kind="guidance", start="14_guidance_fresh_scenes", cfg_teacher="15_teacher_large_triangles"
)

model = dict(guidance_per_sample=True)
train_dataloader = dict(
    dataset=dict(seed=5, repeat={"large star": 3, "star": 2, "large triangle": 3}, size_omitted=0.0)
)
train_cfg = dict(max_iters=1500)
