# 11's guidance distilled, starting from 11, with the guidance drawn per sample (one draw per
# batch makes some iterations' losses far louder than others).
_base_ = ["../../_base_/guidance_flux.py"]
_stage = dict(kind="guidance", start="11_teacher_recondition", cfg_teacher="11_teacher_recondition")

model = dict(guidance_per_sample=True)
train_dataloader = dict(dataset=dict(repeat={"large star": 3, "star": 2}, size_omitted=0.0))
