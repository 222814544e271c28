"""tools/plot_trajectory.py and tools/plot_training_curves.py on the analytic toy and fake logs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch


def test_the_toy_student_is_the_exact_teacher_flow(trajectory):
    toy = trajectory.AnalyticToy()
    x = torch.randn(1, 2, 3, 3, generator=torch.Generator().manual_seed(0))
    sigma = torch.tensor([0.8])
    policy = toy.student_policy(x, sigma, {})
    # v(sigma) of the policy is the teacher's u(sigma) everywhere inside the step
    for s in (0.8, 0.5, 0.0):
        u = toy.teacher_velocity(x, torch.tensor([s]), {})
        assert torch.allclose(policy.velocity(s), u, atol=1e-5)
    # the closed-form move is the exact integral: x(s) = x - a (0.8 - s) - b (e^{0.8c} - e^{sc}) / c
    a, b, c = toy.a.view(1, -1, 1, 1), toy.b.view(1, -1, 1, 1), toy.c
    exact = x - a * 0.8 - b * (math.exp(0.8 * c) - 1) / c
    assert torch.allclose(policy.move(x, 0.8, 0.0), exact, atol=1e-5)


def test_paths_agree_and_the_plot_is_a_small_png(trajectory, tmp_path):
    toy = trajectory.AnalyticToy()
    noise = torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    paths = trajectory.trajectories(toy, noise, {}, nfe=2, teacher_steps=400, points_per_step=8)
    assert paths.arcflow.shape == (2 * 8 + 1, 32) and paths.linear.shape == (3, 32)
    # exact arcs land where a fine Euler teacher lands; the chords share its boundary states
    gap = (paths.arcflow[-1] - paths.teacher[-1]).norm() / (
        paths.teacher[-1] - noise.flatten()
    ).norm()
    assert gap < 0.01
    assert torch.equal(paths.linear[-1], paths.teacher[-1])
    origin, basis = trajectory.plane_basis(paths.teacher)
    assert torch.allclose(basis @ basis.T, torch.eye(2, dtype=basis.dtype), atol=1e-9)
    out = tmp_path / "trajectory.png"
    off_plane = trajectory.plot(paths, out, "toy")
    assert off_plane < 1e-6  # every pixel moves alike: the paths lie in one plane
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size < 200_000


def test_any_sampling_model_and_a_k1_student_work(trajectory, toy_student, tmp_path):
    noise = torch.randn(1, 2, 2, 2, generator=torch.Generator().manual_seed(1))
    student, linear = toy_student(num_components=4), toy_student(num_components=1)
    with torch.no_grad():
        student.means.fill_(0.3)
        linear.means.fill_(0.3)
    paths = trajectory.trajectories(
        student, noise, {}, nfe=3, teacher_steps=12, linear_model=linear
    )
    assert paths.linear.shape == (4, 8) and paths.student_arrows[0].shape == (3, 8)
    assert (
        trajectory.main(["--toy", "--teacher-steps", "20", "--out", str(tmp_path / "t.png")]) == 0
    )


@pytest.mark.slow
def test_a_pipeline_student_is_plotted(trajectory, tiny_flux_stack, tmp_path):
    model, adapter = tiny_flux_stack
    out = tmp_path / "pipeline.png"
    argv = ["--pipeline", "flux", "--model", str(model), "--adapter", str(adapter)]
    argv += ["--size", "32", "--teacher-steps", "8", "--out", str(out)]
    assert trajectory.main(argv) == 0
    assert out.stat().st_size < 200_000


def write_run(root: Path, stamp: str, rows: list[dict]) -> Path:
    folder = root / stamp / "vis_data"
    folder.mkdir(parents=True)
    (folder / "scalars.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_scalars_of_a_resumed_run_merge(curves, tmp_path):
    run = tmp_path / "arcflow_tiny"
    write_run(
        run, "20260101_000000", [{"loss": 4.0, "lr": 1e-4, "iter": i, "step": i} for i in (1, 2)]
    )
    write_run(
        run, "20260101_010000", [{"loss": 1.0, "teacher_ratio": 0.5, "step": i} for i in (2, 3)]
    )
    runs = curves.load_runs([run])
    assert list(runs) == ["arcflow_tiny"]
    assert runs["arcflow_tiny"]["loss"] == {1: 4.0, 2: 1.0, 3: 1.0}
    assert "iter" not in runs["arcflow_tiny"] and "step" not in runs["arcflow_tiny"]
    assert curves.choose_keys(runs, None) == ["loss", "teacher_ratio", "lr"]
    with pytest.raises(KeyError):
        curves.choose_keys(runs, ["grad_norm"])
    out = tmp_path / "curves.png"
    assert curves.main([str(run), "--out", str(out)]) == 0
    assert out.stat().st_size < 200_000


def test_tensorboard_events_are_read(curves, tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    folder = tmp_path / "tb_run" / "20260101_000000" / "vis_data"
    writer = SummaryWriter(str(folder))
    for step in range(1, 4):
        writer.add_scalar("loss", 1.0 / step, step)
    writer.close()
    runs = curves.load_runs([tmp_path / "tb_run"])
    assert runs["tb_run"]["loss"] == pytest.approx({1: 1.0, 2: 0.5, 3: 1 / 3})


def test_ema_is_debiased(curves):
    assert curves.ema([2.0, 2.0, 2.0], 0.9) == pytest.approx([2.0, 2.0, 2.0])
    assert curves.ema([1.0, 3.0], 0.0) == [1.0, 3.0]
