# The conditional Qwen-Image teacher from scratch, at the stage-1 size, at noise levels warped
# towards high noise (shift 3).
_base_ = ["../../_base_/teacher_qwen.py"]
_stage = dict(kind="teacher")

model = dict(transformer=dict(from_config="tiny"))
