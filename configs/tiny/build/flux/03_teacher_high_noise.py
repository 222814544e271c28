# The conditional FLUX teacher from scratch, at the stage-1 size, at noise levels warped towards
# high noise (shift 3), where layout and colours follow the caption.
_base_ = ["../../_base_/teacher_flux.py"]
_stage = dict(kind="teacher")

model = dict(transformer=dict(from_config="tiny"))
