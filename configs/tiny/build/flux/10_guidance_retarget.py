# 07 trained on towards the guided velocity of 09 instead of 06, on 09's scenes and captions.
_base_ = ["../../_base_/guidance_flux.py"]
_stage = dict(kind="guidance", start="07_guidance_distill", cfg_teacher="09_teacher_sizes_stated")

train_dataloader = dict(dataset=dict(repeat={"large star": 3, "star": 2}, size_omitted=0.0))
train_cfg = dict(max_iters=1500)
