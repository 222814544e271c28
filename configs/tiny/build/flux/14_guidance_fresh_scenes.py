# 12 trained on towards the guided velocity of 13, on 13's fresh scenes.
_base_ = ["../../_base_/guidance_flux.py"]
_stage = dict(
    kind="guidance", start="12_guidance_per_sample", cfg_teacher="13_teacher_fresh_scenes"
)

model = dict(guidance_per_sample=True)
train_dataloader = dict(dataset=dict(seed=4, repeat={"large star": 3, "star": 2}, size_omitted=0.0))
train_cfg = dict(max_iters=1500)
