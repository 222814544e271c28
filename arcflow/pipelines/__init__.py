"""Sampling: the one loop over latents, and the diffusers pipelines built on it."""

from arcflow.pipelines.sampling import (
    sample_student,
    sample_teacher,
    student_sigmas,
    teacher_sigmas,
)

__all__ = ["make_noise", "sample_student", "sample_teacher", "student_sigmas", "teacher_sigmas"]
