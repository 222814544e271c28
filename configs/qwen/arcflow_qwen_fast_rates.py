# configs/qwen/arcflow_qwen.py with the student's initial log momentum rates evenly spaced over
# [-30, ln 4] instead of the released [ln 0.2, ln 4] (configs/flux/arcflow_flux_fast_rates.py says
# why; docs/training.md, Initial rates). Untested at full size; the adapter format is the same.
_base_ = ["./arcflow_qwen.py"]

model = dict(student=dict(log_gamma_range=(-30.0, 1.3862943611198906)))
