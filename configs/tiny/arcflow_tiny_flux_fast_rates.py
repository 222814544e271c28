# The tiny FLUX recipe (arcflow_tiny_flux.py) with momentum rates that start fast enough to bend:
# ln(gamma) evenly spaced over [-30, ln 4] instead of the released [ln 0.2, ln 4]. The tiny
# teacher's velocity turns within the first ~0.03 of sigma of step 0 (docs/results.md); with the
# released rates the student must build that turn from huge, cancelling means, while components
# that decay at rates up to 30 per unit of sigma express it with means of the velocity's own size.
# Everything else, the budget and the seed are those of arcflow_tiny_flux.py.
_base_ = ["./arcflow_tiny_flux.py"]

model = dict(student=dict(log_gamma_range=(-30.0, 1.3862943611198906)))
