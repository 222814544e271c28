# Ablation of the mixed-trajectory schedule: arcflow_tiny_flux.py without teacher-ratio decay
# (rho_T = 0 from the first iteration: every intermediate state comes from the student's own
# rollout), everything else and the training budget identical.
_base_ = ["./arcflow_tiny_flux.py"]

model = dict(teacher_ratio_decay=0)
