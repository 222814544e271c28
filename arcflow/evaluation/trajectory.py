"""Trajectory probe: how closely each sampler follows the teacher's own path inside each step.

For every student step ``j`` (noise levels ``sigma_j -> sigma_{j+1}`` of the ``nfe``-step layout)
and every sampler, from that sampler's own state ``x_j`` at ``sigma_j``:

- the teacher's *fine path* ``x_T(sigma)`` over the step: its ODE ``dx/dsigma = u_T(x, sigma)``
  (guidance as the sampler uses it) integrated with ``substeps`` Heun (or Euler) substeps, evenly
  spaced in sigma;
- the sampler's state at the fractions ``f`` of the step, ``sigma_f = sigma_j - f (sigma_j -
  sigma_{j+1})``: a student's closed-form move ``P_j.move(x_j, sigma_j, sigma_f)``, the teacher's
  one Euler step ``x_j + (sigma_f - sigma_j) u_T(x_j, sigma_j)``;
- the relative error ``e_f = ||x_sampler(sigma_f) - x_T(sigma_f)|| / ||x_T(sigma_{j+1}) - x_j||``
  (the teacher's displacement over the step, per sample);
- the chord deviation of the teacher's path, ``c_f = ||x_T(sigma_f) - (x_j + f (x_T(sigma_{j+1})
  - x_j))|| / ||x_T(sigma_{j+1}) - x_j||``: what the best straight step (K = 1) must miss inside
  the step even when it lands exactly.

A student whose arc follows the teacher has ``e_f`` near 0 at every ``f``; the linear shortcut can
at best reach ``e_f = c_f``. Means over samples come with a 95 % t-interval.

:func:`imitation_oracle_step` is a sampler without a network: per-image policy parameters fitted
by the distillation's own imitation loss. It shows what that loss can reach with unlimited capacity,
so a trained student's gap to it is what the network and its budget lose.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from arcflow.flow import ArcFlowPolicy, unwarp_sigma
from arcflow.flow.sampling import Cond, SupportsSampling, student_sigmas
from arcflow.models.imitation import ImitationConfig, imitate_segment
from arcflow.released import RELEASED_LOG_GAMMA_RANGE, RELEASED_NFE, RELEASED_SHIFT

DEFAULT_FRACTIONS = (0.25, 0.5, 0.75, 1.0)
SOLVERS = ("heun", "euler")
TEACHER_EULER = "teacher_euler"
# x at sigma_from -> states at each sigma of `targets` ((F,) float64), stacked (F, B, C, H, W).
StepFn = Callable[[torch.Tensor, float, torch.Tensor, Cond], torch.Tensor]


def student_step(model: SupportsSampling) -> StepFn:
    """A student's step: one evaluation at ``sigma_from``, closed-form moves to each target."""

    def step(x: torch.Tensor, sigma_from: float, targets: torch.Tensor, cond: Cond) -> torch.Tensor:
        sigma = torch.full((x.shape[0],), sigma_from, device=x.device)
        policy = model.student_policy(x, sigma, cond)
        return torch.stack([policy.move(x, sigma_from, float(s)) for s in targets]).float()

    return step


def teacher_euler_step(model: SupportsSampling) -> StepFn:
    """The teacher's one Euler step over the whole student step (what 2-step Euler does)."""

    def step(x: torch.Tensor, sigma_from: float, targets: torch.Tensor, cond: Cond) -> torch.Tensor:
        sigma = torch.full((x.shape[0],), sigma_from, device=x.device)
        u = model.teacher_velocity(x, sigma, cond).float()
        return torch.stack([x.float() + (float(s) - sigma_from) * u for s in targets])

    return step


def imitation_oracle_step(
    teacher: SupportsSampling,
    num_components: int,
    *,
    log_gamma_range: tuple[float, float] = RELEASED_LOG_GAMMA_RANGE,
    steps: int = 1500,
    lr: float = 0.02,
    imitation: ImitationConfig | None = None,
    shift: float = RELEASED_SHIFT,
    seed: int = 0,
) -> StepFn:
    """A step whose policy is fitted, per image, by the imitation loss instead of predicted.

    From the step's start state ``x`` the means ``(B, K, C, H, W)`` (initialised to the teacher's
    velocity there) and logits ``(B, K, 1, H, W)`` (0) are free parameters, the log-rates are
    fixed, evenly spaced over ``log_gamma_range`` as a student head starts them, and ``steps``
    Adam steps at ``lr`` minimise :func:`~arcflow.models.imitation.imitate_segment` over the step
    with teacher ratio 0 (the states on the policy's own arc). ``imitation``: its settings
    (default: the released ones without policy dropout). The step's end is ``targets[-1]``, as
    :func:`probe_batch` passes it. Costs ``steps * num_intermediate_states`` teacher forwards.
    """
    cfg = imitation or ImitationConfig(policy_dropout=0.0, shift=shift)

    def step(x: torch.Tensor, sigma_from: float, targets: torch.Tensor, cond: Cond) -> torch.Tensor:
        batch, _, height, width = x.shape
        tau_src = float(unwarp_sigma(sigma_from, cfg.shift))
        segment = tau_src - float(unwarp_sigma(float(targets[-1]), cfg.shift))
        sigma = torch.full((batch,), sigma_from, device=x.device)
        start = teacher.teacher_velocity(x, sigma, cond).float()
        means = start.unsqueeze(1).repeat(1, num_components, 1, 1, 1).requires_grad_(True)
        logits = x.new_zeros((batch, num_components, 1, height, width)).float()
        logits.requires_grad_(True)
        log_rates = None
        if num_components > 1:
            span = torch.linspace(*log_gamma_range, num_components - 1, device=x.device)
            log_rates = span.view(1, -1, 1, 1, 1).expand(batch, -1, 1, height, width)
        optimizer = torch.optim.Adam([means, logits], lr=lr)
        rng = torch.Generator().manual_seed(seed)

        def velocity(state: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
            return teacher.teacher_velocity(state, s, cond)

        with torch.enable_grad():
            for _ in range(steps):
                policy = ArcFlowPolicy(means, logits, log_rates, sigma_from)
                loss, _ = imitate_segment(policy, x, tau_src, segment, velocity, 0.0, cfg, rng)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        policy = ArcFlowPolicy(means.detach(), logits.detach(), log_rates, sigma_from)
        return torch.stack([policy.move(x, sigma_from, float(s)) for s in targets]).float()

    return step


def teacher_path(
    model: SupportsSampling,
    x: torch.Tensor,
    sigma_from: float,
    sigma_to: float,
    cond: Cond,
    substeps: int,
    solver: str = "heun",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's ODE path from ``x`` ``(B, C, H, W)`` at ``sigma_from`` to ``sigma_to``.

    ``substeps`` steps evenly spaced in sigma; Heun: ``x' = x + h u(x, s)``, then
    ``x <- x + h (u(x, s) + u(x', s + h)) / 2`` with ``h = s_next - s`` (2 evaluations a substep,
    error O(h^2)); Euler: ``x <- x + h u(x, s)`` (one, O(h)).

    Returns:
        ``(sigmas (substeps + 1,) float64, states (substeps + 1, B, C, H, W) float32)``.
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if substeps < 1:
        raise ValueError(f"substeps must be >= 1, got {substeps}")
    sigmas = torch.linspace(sigma_from, sigma_to, substeps + 1, dtype=torch.float64)

    def velocity(state: torch.Tensor, s: float) -> torch.Tensor:
        sigma = torch.full((state.shape[0],), s, device=state.device)
        return model.teacher_velocity(state, sigma, cond).float()

    state = x.float()
    states = [state]
    for s, s_next in zip(sigmas[:-1].tolist(), sigmas[1:].tolist()):
        h = s_next - s
        u = velocity(state, s)
        if solver == "heun":
            u = (u + velocity(state + h * u, s_next)) / 2
        state = state + h * u
        states.append(state)
    return sigmas, torch.stack(states)


def _interpolate(sigmas: torch.Tensor, states: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """States of a fine path at ``targets``: exact at its nodes, linear between them."""
    position = (sigmas[0] - targets) / (sigmas[0] - sigmas[-1]) * (len(sigmas) - 1)
    out = []
    for p in position.tolist():
        lo = min(int(math.floor(p + 1e-9)), len(sigmas) - 2)
        t = min(max(p - lo, 0.0), 1.0)
        out.append(states[lo] + t * (states[lo + 1] - states[lo]))
    return torch.stack(out)


def _norm(x: torch.Tensor) -> torch.Tensor:
    """Per-sample L2 norm over every dimension after the batch one: ``(..., B, *) -> (..., B)``."""
    return x.flatten(start_dim=-3).norm(dim=-1)


@dataclass
class StepErrors:
    """Per-sample errors of one sampler over one step: each ``(B, F)`` for the fractions."""

    error: torch.Tensor
    chord_deviation: torch.Tensor


@torch.no_grad()
def probe_batch(
    teacher: SupportsSampling,
    samplers: dict[str, StepFn],
    noise: torch.Tensor,
    cond: Cond,
    *,
    nfe: int = RELEASED_NFE,
    timestep_ratio: float = 1.0,
    shift: float = RELEASED_SHIFT,
    substeps: int = 16,
    solver: str = "heun",
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    steps: int | None = None,
) -> dict[str, list[StepErrors]]:
    """Errors of every sampler against the teacher's fine path, step by step, from ``noise``.

    Each sampler carries on from its own end state into the next step; at step 0 they share the
    start (the noise), so the teacher's path there is integrated once.

    Args:
        teacher: gives ``teacher_velocity`` (guidance as configured on it).
        samplers: name -> step function (:func:`student_step`, :func:`teacher_euler_step`).
        noise: ``(B, C, H, W)`` start states at sigma = 1.
        steps: probe the first ``steps`` student steps only (default: all ``nfe``).
    Returns:
        name -> one :class:`StepErrors` per student step.
    """
    if not fractions or any(not 0 < f <= 1 for f in fractions):
        raise ValueError(f"fractions must lie in (0, 1], got {list(fractions)}")
    boundaries = student_sigmas(nfe, timestep_ratio, shift).tolist()
    fraction = torch.tensor(list(fractions), dtype=torch.float64)
    along = fraction.view(-1, 1, 1, 1, 1).float().to(noise.device)
    states = {name: noise.float() for name in samplers}
    results: dict[str, list[StepErrors]] = {name: [] for name in samplers}
    if steps is not None and not 1 <= steps <= nfe:
        raise ValueError(f"steps must lie in [1, nfe = {nfe}], got {steps}")
    for j in range(nfe if steps is None else steps):
        sigma_from, sigma_to = boundaries[j], boundaries[j + 1]
        # The fractions' noise levels, then the step's end (the last row of every stack below).
        targets = torch.cat(
            [sigma_from - fraction * (sigma_from - sigma_to), torch.tensor([sigma_to])]
        )
        # Samplers still sharing a start state (all of them at step 0) share its teacher path.
        paths: list[tuple[torch.Tensor, torch.Tensor]] = []
        for name, step in samplers.items():
            x = states[name]
            reference = next((ref for start, ref in paths if torch.equal(start, x)), None)
            if reference is None:
                fine = teacher_path(teacher, x, sigma_from, sigma_to, cond, substeps, solver)
                reference = _interpolate(*fine, targets)
                paths.append((x, reference))
            moved = step(x, sigma_from, targets, cond)
            displacement = _norm(reference[-1] - x).clamp_min(1e-12)
            chord = x + along * (reference[-1] - x)
            results[name].append(
                StepErrors(
                    error=(_norm(moved[:-1] - reference[:-1]) / displacement).T.cpu(),
                    chord_deviation=(_norm(reference[:-1] - chord) / displacement).T.cpu(),
                )
            )
            states[name] = moved[-1]
    return results


def mean_interval(values: torch.Tensor, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``values`` ``(N,)`` and its two-sided t-interval ``(mean, low, high)``."""
    from scipy.stats import t as student_t

    values = values.double()
    mean = float(values.mean())
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = float(student_t.ppf((1 + level) / 2, len(values) - 1)) * float(
        values.std() / math.sqrt(len(values))
    )
    return mean, mean - half, mean + half


@dataclass(frozen=True)
class ProbeRecord:
    """One summary line: a sampler's mean ``metric`` at one fraction of one step."""

    sampler: str
    step: int
    sigma_from: float
    sigma_to: float
    fraction: float
    sigma: float
    metric: str  # "error" or "chord_deviation"
    mean: float
    ci_low: float
    ci_high: float
    samples: int


@dataclass
class ProbeResult:
    records: list[ProbeRecord]
    settings: dict

    def select(self, metric: str = "error", step: int | None = None) -> list[ProbeRecord]:
        return [r for r in self.records if r.metric == metric and (step is None or r.step == step)]

    def mean_error(self, sampler: str, step: int = 0) -> float:
        """The mean over the step's fractions of a sampler's mean error."""
        rows = [r.mean for r in self.select("error", step) if r.sampler == sampler]
        return sum(rows) / len(rows)


def summarize(
    errors: dict[str, list[StepErrors]],
    nfe: int,
    timestep_ratio: float,
    shift: float,
    fractions: Sequence[float],
    settings: dict | None = None,
) -> ProbeResult:
    """Per-sample errors (as :func:`probe_batch` returns, batches concatenated) -> records."""
    boundaries = student_sigmas(nfe, timestep_ratio, shift).tolist()
    records = []
    for name, steps in errors.items():
        for j, step in enumerate(steps):
            sigma_from, sigma_to = boundaries[j], boundaries[j + 1]
            for metric in ("error", "chord_deviation"):
                values = getattr(step, metric)
                for i, f in enumerate(fractions):
                    mean, low, high = mean_interval(values[:, i])
                    records.append(
                        ProbeRecord(
                            name,
                            j,
                            sigma_from,
                            sigma_to,
                            float(f),
                            sigma_from - f * (sigma_from - sigma_to),
                            metric,
                            mean,
                            low,
                            high,
                            len(values),
                        )
                    )
    return ProbeResult(records, dict(settings or {}))


def probe_trajectories(
    stack,
    samplers: dict[str, StepFn],
    texts: Sequence[str],
    *,
    seed: int = 0,
    batch_prompts: int = 16,
    nfe: int = RELEASED_NFE,
    timestep_ratio: float = 1.0,
    substeps: int = 16,
    solver: str = "heun",
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    steps: int | None = None,
    progress: bool = False,
) -> ProbeResult:
    """:func:`probe_batch` over a prompt set, image ``i`` from the noise of seed ``seed + i`` (the
    convention of the harness and of ``inference_*.py``), summarised with 95 % intervals.

    Args:
        stack: a :class:`~arcflow.evaluation.harness.GenerationStack` (its ``encode``, ``teacher``,
            ``latent_shape``, ``shift`` and ``device``).
        samplers: name -> step function.
    """
    from tqdm.auto import tqdm

    from arcflow.flow.sampling import make_noise

    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    collected: dict[str, list[list[StepErrors]]] = {name: [] for name in samplers}
    bar = tqdm(total=len(texts), disable=not progress, unit="prompt", desc="probe")
    for start in range(0, len(texts), batch_prompts):
        batch = list(texts[start : start + batch_prompts])
        generators = [torch.Generator().manual_seed(seed + start + i) for i in range(len(batch))]
        noise = make_noise(len(batch), *stack.latent_shape, generators, stack.device)
        errors = probe_batch(
            stack.teacher,
            samplers,
            noise,
            stack.encode(batch),
            nfe=nfe,
            timestep_ratio=timestep_ratio,
            shift=stack.shift,
            substeps=substeps,
            solver=solver,
            fractions=fractions,
            steps=steps,
        )
        for name, per_step in errors.items():
            collected[name].append(per_step)
        bar.update(len(batch))
    bar.close()
    merged = {
        name: [
            StepErrors(
                torch.cat([b[j].error for b in batches]),
                torch.cat([b[j].chord_deviation for b in batches]),
            )
            for j in range(len(batches[0]))
        ]
        for name, batches in collected.items()
    }
    settings = dict(
        prompts=len(texts),
        seed=seed,
        nfe=nfe,
        timestep_ratio=timestep_ratio,
        shift=stack.shift,
        substeps=substeps,
        solver=solver,
        fractions=list(fractions),
    )
    return summarize(merged, nfe, timestep_ratio, stack.shift, fractions, settings)


def write_jsonl(result: ProbeResult, path: Path) -> Path:
    """One JSON object per line: the settings first, then each :class:`ProbeRecord`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"settings": result.settings})]
    lines += [json.dumps(asdict(r)) for r in result.records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _save_figure(fig, ax, path: Path) -> Path:
    import matplotlib.pyplot as plt

    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def read_jsonl(path: Path) -> ProbeResult:
    """The inverse of :func:`write_jsonl`."""
    lines = [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    settings = json.loads(lines[0])["settings"]
    return ProbeResult([ProbeRecord(**json.loads(line)) for line in lines[1:]], settings)


def learning_curves(result: ProbeResult, step: int = 0) -> dict[str, list[tuple[int, float]]]:
    """Samplers named ``LABEL@ITERATIONS`` (e.g. ``fast@800``: a run's checkpoint) grouped into one
    curve per label: ``label -> [(iterations, mean error over the step's fractions), ...]``."""
    curves: dict[str, list[tuple[int, float]]] = {}
    for name in dict.fromkeys(r.sampler for r in result.records):
        label, at, iters = name.rpartition("@")
        if at and iters.isdigit():
            curves.setdefault(label, []).append((int(iters), result.mean_error(name, step)))
    return {label: sorted(points) for label, points in curves.items()}


def plot_learning_curves(result: ProbeResult, path: Path, step: int = 0, title: str = "") -> Path:
    """Mean error over the step's fractions against training iterations, one line per
    :func:`learning_curves` label; every other sampler except the teacher's Euler step (far above
    the students) is a dotted horizontal reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = learning_curves(result, step)
    if not curves:
        raise ValueError("no sampler is named LABEL@ITERATIONS: nothing to plot against iterations")
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for label, points in curves.items():
        ax.plot([n for n, _ in points], [e for _, e in points], "o-", label=label)
    in_curves = {f"{label}@{n}" for label, points in curves.items() for n, _ in points}
    samplers = dict.fromkeys(r.sampler for r in result.records)
    references = [s for s in samplers if s not in in_curves and s != TEACHER_EULER]
    for i, name in enumerate(references):
        ax.axhline(result.mean_error(name, step), ls=":", color=f"C{len(curves) + i}", label=name)
    ax.set_xlabel("training iterations")
    ax.set_ylabel(f"step {step}: mean ||x - x_teacher|| / ||teacher step||")
    ax.set_ylim(bottom=0)
    ax.set_title(title or f"distance to the teacher's path in step {step} against training length")
    return _save_figure(fig, ax, path)


def markdown_table(result: ProbeResult) -> str:
    """Mean relative error per sampler (rows) and step fraction (columns), one block per step,
    with the teacher path's chord deviation as the first row of each block."""
    fractions = result.settings.get("fractions", DEFAULT_FRACTIONS)
    head = "| step | sampler | " + " | ".join(f"{f:g}" for f in fractions) + " | mean |"
    lines = [head, "|" + "---|" * (len(fractions) + 3)]
    for step in sorted({r.step for r in result.records}):
        rows = result.select("error", step)
        chord = [r for r in result.select("chord_deviation", step) if r.sampler == rows[0].sampler]
        blocks = [("teacher path: chord deviation", chord)]
        blocks += [
            (s, [r for r in rows if r.sampler == s]) for s in dict.fromkeys(r.sampler for r in rows)
        ]
        for name, cells in blocks:
            values = [r.mean for r in cells]
            text = " | ".join(f"{r.mean:.3f} ({r.ci_low:.3f}-{r.ci_high:.3f})" for r in cells)
            span = f"{cells[0].sigma_from:.3f}->{cells[0].sigma_to:.3f}"
            lines.append(f"| {step} ({span}) | {name} | {text} | {sum(values) / len(values):.3f} |")
    return "\n".join(lines)


def plot(result: ProbeResult, path: Path, title: str = "") -> Path:
    """Error against sigma inside each step (one line per sampler, shaded 95 % interval), the
    teacher path's chord deviation dashed; steps separated by vertical lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    samplers = list(dict.fromkeys(r.sampler for r in result.records))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    steps = sorted({r.step for r in result.records})
    for step in steps:
        rows = result.select("error", step)
        first = rows[0]
        ax.axvline(first.sigma_from, color="0.8", lw=0.8)
        for i, name in enumerate(samplers):
            cells = [r for r in rows if r.sampler == name]
            sig = [first.sigma_from] + [r.sigma for r in cells]
            ax.plot(
                sig,
                [0.0] + [r.mean for r in cells],
                "o-",
                ms=3,
                color=colors[i % 10],
                label=name if step == 0 else None,
            )
            ax.fill_between(
                sig,
                [0.0] + [r.ci_low for r in cells],
                [0.0] + [r.ci_high for r in cells],
                color=colors[i % 10],
                alpha=0.15,
            )
        chord = [r for r in result.select("chord_deviation", step) if r.sampler == samplers[0]]
        ax.plot(
            [first.sigma_from] + [r.sigma for r in chord],
            [0.0] + [r.mean for r in chord],
            "--",
            color="0.3",
            label="chord deviation of the teacher path" if step == 0 else None,
        )
    ax.axvline(0.0, color="0.8", lw=0.8)
    ax.invert_xaxis()
    ax.set_xlabel("sigma (sampling runs right to left, 1 -> 0)")
    ax.set_ylabel("||x - x_teacher|| / ||teacher step||")
    ax.set_title(title or "distance to the teacher's path inside each student step")
    return _save_figure(fig, ax, path)
