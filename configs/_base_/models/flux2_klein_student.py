# An ArcFlow student of FLUX.2 [klein] base 4B (docs/bases.md): FLUX.1-dev's released student
# layout (K = 16, LoRA rank/alpha 256 on the MLPs, the output projections and the timestep
# embedder; no ArcFlow student of FLUX.2 is published). The teacher runs true CFG 4.0 with the
# empty negative prompt, the student once per step without CFG.
_base_ = ["./flux_student.py"]

model = dict(
    student=dict(
        arch="flux2_klein",
        transformer=dict(from_pretrained="black-forest-labs/FLUX.2-klein-base-4B"),
        guidance_scale=4.0,
    ),
)
