# The tiny Qwen-Image recipe (arcflow_tiny_qwen.py) with momentum rates that start fast enough to
# bend: ln(gamma) evenly spaced over [-30, ln 4] instead of the released [ln 0.2, ln 4]
# (arcflow_tiny_flux_fast_rates.py says why). Budget, batches and seed unchanged.
_base_ = ["./arcflow_tiny_qwen.py"]

model = dict(student=dict(log_gamma_range=(-30.0, 1.3862943611198906)))
