# 06's classifier-free guidance distilled into the embedded guidance input, starting from 06.
_base_ = ["../../_base_/guidance_flux.py"]
_stage = dict(kind="guidance", start="06_teacher_deepen", cfg_teacher="06_teacher_deepen")
