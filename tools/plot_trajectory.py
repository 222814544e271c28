"""Teacher path vs ArcFlow arc vs linear shortcut for one sample, projected to 2-D.

    python tools/plot_trajectory.py --toy --out docs/images/trajectory_toy.png
    python tools/plot_trajectory.py --pipeline flux --prompt "a red circle" --out traj.png

Curves, all from the same noise:

- teacher: the ``--teacher-steps`` Euler path (the reference);
- ArcFlow: the student's ``--nfe`` closed-form arcs, drawn densely inside each step;
- linear shortcut: a K = 1 student's straight steps when :func:`trajectories` is given one, else
  the chords between the teacher's states at the student's step boundaries: the path of an ideal
  K = 1 student, one that lands exactly on the teacher's path.

The latents are projected onto the plane through the start (noise), the end (teacher sample) and
the teacher's mid-point. Arrows give the sampling direction ``-u`` (sigma decreasing) of the teacher
along its path and of the student at the start of each of its steps. The fraction of the paths'
spread that the plane misses is printed in the title: near 0, the picture is the whole story.

Any model with ``student_policy`` / ``teacher_velocity`` works (see
``arcflow.flow.sampling.SupportsSampling``): the analytic toy below, a tiny or full student.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import arcflow.tinyworld.presets  # noqa: E402, F401  (registers --preset tiny)
from arcflow.errors import run_cli  # noqa: E402
from arcflow.flow import ArcFlowPolicy  # noqa: E402
from arcflow.flow.sampling import (  # noqa: E402
    Cond,
    SupportsSampling,
    make_noise,
    sample_teacher,
    student_sigmas,
    teacher_sigmas,
)
from arcflow.released import RELEASED_NFE, RELEASED_SHIFT  # noqa: E402


class AnalyticToy(nn.Module):
    """A teacher whose velocity ``u(sigma) = a + b exp(c sigma)`` (per channel, every pixel alike)
    bends its path, and the ArcFlow student that represents it exactly.

    At ``sigma_src`` the velocity is ``a + (b e^{c sigma_src}) e^{-c (sigma_src - sigma)}``: two
    equally weighted components with means ``2a`` (rate 0) and ``2 b e^{c sigma_src}`` (rate
    ``-c``). A linear shortcut (K = 1) cannot follow it.
    """

    def __init__(
        self, a: tuple[float, ...] = (1.0, -1.0), b: tuple[float, ...] = (-0.6, 0.3), c=2.5
    ) -> None:
        super().__init__()
        self.register_buffer("a", torch.tensor(a))
        self.register_buffer("b", torch.tensor(b))
        self.c = c

    @property
    def latent_channels(self) -> int:
        return self.a.numel()

    def teacher_velocity(self, x: torch.Tensor, sigma: torch.Tensor, cond: Cond) -> torch.Tensor:
        growth = torch.exp(self.c * sigma).view(-1, 1, 1, 1)
        return (self.a.view(1, -1, 1, 1) + self.b.view(1, -1, 1, 1) * growth).expand_as(x)

    def student_policy(self, x: torch.Tensor, sigma: torch.Tensor, cond: Cond) -> ArcFlowPolicy:
        batch, channels, height, width = x.shape
        scale = torch.exp(self.c * sigma).view(-1, 1, 1)
        means = torch.stack([2 * self.a.expand(batch, -1), 2 * self.b * scale.view(-1, 1)], 1)
        means = means.view(batch, 2, channels, 1, 1).expand(-1, -1, -1, height, width)
        logits = x.new_zeros(batch, 2, 1, height, width)
        log_rates = x.new_full((batch, 1, 1, height, width), -self.c)
        return ArcFlowPolicy(means, logits, log_rates, sigma)


@dataclass
class Trajectories:
    """Latent paths, each ``(N, D)`` (flattened latents of one sample), and velocity arrows."""

    teacher: torch.Tensor
    arcflow: torch.Tensor
    linear: torch.Tensor
    teacher_arrows: tuple[torch.Tensor, torch.Tensor]  # positions (M, D), directions (M, D)
    student_arrows: tuple[torch.Tensor, torch.Tensor]


def _student_path(
    model: SupportsSampling,
    noise: torch.Tensor,
    cond: Cond,
    nfe: int,
    shift: float,
    points_per_step: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The closed-form arcs of sample 0, ``(nfe * points_per_step + 1, D)``, and the start
    ``(nfe, D)`` and sampling direction ``-v(sigma_j)`` ``(nfe, D)`` of each step."""
    sigmas = student_sigmas(nfe, 1.0, shift).tolist()
    arc, starts, directions = [noise[0].flatten().double()], [], []
    x = noise
    for j in range(nfe):
        sigma = torch.full((x.shape[0],), sigmas[j], device=x.device)
        policy = model.student_policy(x, sigma, cond)
        starts.append(x[0].flatten().double())
        directions.append(-policy.velocity(sigmas[j])[0].flatten().double())
        grid = torch.linspace(sigmas[j], sigmas[j + 1], points_per_step + 1)
        for s in grid[1:].tolist():
            arc.append(policy.move(x, sigmas[j], s)[0].flatten().double())
        x = policy.move(x, sigmas[j], sigmas[j + 1])
    return torch.stack(arc), torch.stack(starts), torch.stack(directions)


@torch.no_grad()
def trajectories(
    model: SupportsSampling,
    noise: torch.Tensor,
    cond: Cond,
    nfe: int = RELEASED_NFE,
    teacher_steps: int = 50,
    shift: float = RELEASED_SHIFT,
    points_per_step: int = 24,
    arrows: int = 10,
    linear_model: SupportsSampling | None = None,
) -> Trajectories:
    """The three paths of sample 0 of ``noise`` ``(1, C, H, W)``, as float64 flat latents.

    ``linear_model``: a K = 1 student whose path is the linear shortcut; None draws the ideal one
    (the teacher's states at the student's boundaries, joined straight).
    """
    states = [noise]
    sample_teacher(model, noise, cond, teacher_steps, shift, lambda j, s, x: states.append(x))
    teacher = torch.stack([s[0].flatten().double() for s in states])
    t_sigmas = teacher_sigmas(teacher_steps, shift)

    arc, starts, directions = _student_path(model, noise, cond, nfe, shift, points_per_step)
    if linear_model is not None:
        linear = _student_path(linear_model, noise, cond, nfe, shift, 1)[0]
    else:
        nearest = [int((t_sigmas - s).abs().argmin()) for s in student_sigmas(nfe, 1.0, shift)]
        linear = teacher[nearest]

    picks = torch.linspace(0, teacher_steps - 1, min(arrows, teacher_steps)).round().long()
    t_dirs = []
    for j in picks.tolist():
        sigma = torch.full((noise.shape[0],), float(t_sigmas[j]), device=noise.device)
        t_dirs.append(-model.teacher_velocity(states[j], sigma, cond)[0].flatten().double())
    return Trajectories(
        teacher, arc, linear, (teacher[picks], torch.stack(t_dirs)), (starts, directions)
    )


def plane_basis(path: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Origin ``(D,)`` and orthonormal basis ``(2, D)`` of the plane through the path's start,
    end and mid-point (its point farthest from the chord when the mid-point lies on it)."""
    origin, chord = path[0], path[-1] - path[0]
    e1 = chord / chord.norm().clamp(min=1e-12)
    offsets = path - origin
    residual = offsets - (offsets @ e1)[:, None] * e1
    mid = residual[len(path) // 2]
    if mid.norm() < 1e-6 * chord.norm():
        mid = residual[int(residual.norm(dim=1).argmax())]
    e2 = mid / mid.norm().clamp(min=1e-12)
    return origin, torch.stack([e1, e2])


def plot(paths: Trajectories, out: Path, title: str = "") -> float:
    """Draw the projected paths into ``out`` (PNG); returns the off-plane fraction."""
    origin, basis = plane_basis(paths.teacher)

    def project(points: torch.Tensor) -> torch.Tensor:
        return (points - origin) @ basis.T

    every = torch.cat([paths.teacher, paths.arcflow]) - origin
    off_plane = float((every - (every @ basis.T) @ basis).norm() / every.norm().clamp(min=1e-12))

    fig, ax = plt.subplots(figsize=(5.2, 4.2), dpi=110)
    t, a, lin = project(paths.teacher), project(paths.arcflow), project(paths.linear)
    ax.plot(t[:, 0], t[:, 1], "-", color="0.2", lw=2.2, label="teacher (Euler)", zorder=2)
    ax.plot(a[:, 0], a[:, 1], "-", color="tab:orange", lw=1.8, label="ArcFlow arcs", zorder=3)
    ax.plot(lin[:, 0], lin[:, 1], "--o", color="tab:blue", lw=1.4, ms=4, label="linear shortcut")
    span = float((t.max(0).values - t.min(0).values).norm())
    for (points, dirs), color in (
        (paths.teacher_arrows, "0.35"),
        (paths.student_arrows, "tab:orange"),
    ):
        p, d = project(points), dirs @ basis.T
        d = d / d.norm(dim=1, keepdim=True).clamp(min=1e-12) * 0.08 * span
        ax.quiver(p[:, 0], p[:, 1], d[:, 0], d[:, 1], color=color, angles="xy",
                  scale_units="xy", scale=1, width=0.006, zorder=4)  # fmt: skip
    ax.plot(*t[0].tolist(), "k^", ms=7)
    ax.annotate("noise", t[0].tolist(), textcoords="offset points", xytext=(6, -10))
    ax.annotate("sample", t[-1].tolist(), textcoords="offset points", xytext=(8, -14))
    ax.set_xlabel("along start -> end")
    ax.set_ylabel("towards the mid-point")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(f"{title}\noff-plane: {100 * off_plane:.1f}%", fontsize=9)
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return off_plane


def load_pipeline_model(
    arch: str, prompt: str, model: str | None, adapter: str | None, size: int | None = None
) -> tuple[SupportsSampling, Cond, int]:
    """The student of a pipeline folder + adapter (default: the shipped tiny stack), its
    conditioning (Qwen-Image: with the empty negative prompt of the teacher's CFG) and the latent
    side of a ``size``-pixel image (default: 64 for the tiny stack, else 1024)."""
    from arcflow.pipelines.loading import load_measured_pipeline, specs_under

    spec = specs_under(REPO_ROOT)[arch]
    pipe, default_size, max_length = load_measured_pipeline(
        spec, model, adapter, torch.float32, "cpu"
    )
    negative = {"negative_prompt": ""} if arch == "qwen_image" else {}
    cond = pipe.encode_cond(prompt, 1, max_length, **negative)
    size = size or default_size
    return pipe.student, cond, size // pipe.vae_scale_factor


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--toy", action="store_true", help="the analytic toy (exact ArcFlow fit)")
    source.add_argument("--pipeline", choices=("flux", "qwen_image"), help="a pipeline's student")
    parser.add_argument("--model", help="--pipeline: diffusers folder (default: tiny stack)")
    parser.add_argument("--adapter", help="--pipeline: adapter folder (default: tiny stack)")
    parser.add_argument("--prompt", default="a red circle above a blue square")
    parser.add_argument("--size", type=int, help="--pipeline: image side in pixels")
    parser.add_argument("--nfe", type=int, default=2)
    parser.add_argument("--teacher-steps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("trajectory.png"))
    args = parser.parse_args(argv)

    generator = torch.Generator().manual_seed(args.seed)
    if args.toy:
        model, cond, side, title = AnalyticToy(), {}, 4, "analytic toy"
    else:
        model, cond, side = load_pipeline_model(
            args.pipeline, args.prompt, args.model, args.adapter, args.size
        )
        title = f"{args.pipeline}: {args.prompt!r}"
    noise = make_noise(1, model.latent_channels, side, side, generator)
    paths = trajectories(model, noise, cond, args.nfe, args.teacher_steps)
    caption = f"{title}, seed {args.seed}: {args.nfe} NFE vs {args.teacher_steps} teacher steps"
    off_plane = plot(paths, args.out, caption)
    print(f"wrote {args.out} (off-plane fraction {off_plane:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
