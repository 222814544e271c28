# configs/flux/arcflow_flux.py with the student's initial log momentum rates evenly spaced over
# [-30, ln 4] instead of the released [ln 0.2, ln 4]: components that decay within a few hundredths
# of sigma, able to follow a teacher whose velocity turns early in a step. In the tiny world this
# span is what lets the 2-step arcs follow the teacher's path more closely than a straight step
# (docs/training.md, Initial rates); at full size it is untested: compare it with the released span
# by the trajectory probe (tools/probe_trajectory.py) at equal budget. The adapter format is the
# same.
_base_ = ["./arcflow_flux.py"]

model = dict(student=dict(log_gamma_range=(-30.0, 1.3862943611198906)))
