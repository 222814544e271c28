"""The trajectory probe against closed forms: a velocity field that is exactly an ArcFlow mixture,
a straight field, and tools/probe_trajectory.py on tiny-world-shaped stacks."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from arcflow.evaluation import trajectory
from arcflow.flow import ArcFlowPolicy
from arcflow.flow.sampling import student_sigmas

ROOT = Path(__file__).resolve().parents[2]
SHAPE = (3, 2, 4, 4)  # (B, C, H, W)
FRACTIONS = (0.25, 0.5, 0.75, 1.0)


class MixtureField:
    """A teacher whose velocity is ``v(sigma) = sum_k w_k mu_k exp(r_k (1 - sigma))`` whatever the
    state, and a student that holds exactly those parameters (re-anchored at its own sigma)."""

    def __init__(self, k: int = 3, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        b, c, h, w = SHAPE
        self.means = torch.randn(b, k, c, h, w, generator=g, dtype=torch.float64)
        self.logits = torch.randn(b, k, 1, h, w, generator=g, dtype=torch.float64)
        self.rates = torch.rand(b, k - 1, 1, h, w, generator=g, dtype=torch.float64) * 4 - 2
        self.weights = torch.softmax(self.logits, dim=1)
        self.all_rates = torch.cat([torch.zeros_like(self.rates[:, :1]), self.rates], dim=1)

    def velocity(self, sigma: float) -> torch.Tensor:
        growth = torch.exp(self.all_rates * (1 - sigma))
        return (self.weights * self.means * growth).sum(dim=1)

    def displacement(self, sigma_from: float, sigma_to: float) -> torch.Tensor:
        """``x(sigma_to) - x(sigma_from)``, the integral of ``v`` written out per component:
        ``-w_0 mu_0 h`` for the constant one, ``w_k mu_k (e^{r_k(1 - s_to)} - e^{r_k(1 - s_from)})
        / -r_k`` for the others."""
        constant = self.weights[:, 0] * self.means[:, 0] * (sigma_from - sigma_to)
        r = self.rates
        grown = (torch.exp(r * (1 - sigma_to)) - torch.exp(r * (1 - sigma_from))) / r
        return -(constant + (self.weights[:, 1:] * self.means[:, 1:] * grown).sum(dim=1))

    # SupportsSampling
    def teacher_velocity(self, x, sigma, cond):
        return self.velocity(float(sigma[0])).to(x.dtype)

    def student_policy(self, x, sigma, cond):
        s = float(sigma[0])
        means = self.means * torch.exp(self.all_rates * (1 - s)).expand_as(self.means)
        return ArcFlowPolicy(means.float(), self.logits.float(), self.rates.float(), s)


class ChordStudent:
    """K = 1 students that travel each step's chord of the field's exact path."""

    def __init__(self, field: MixtureField, nfe: int) -> None:
        self.field = field
        self.sigmas = student_sigmas(nfe).tolist()

    def student_policy(self, x, sigma, cond):
        j = min(range(len(self.sigmas)), key=lambda i: abs(self.sigmas[i] - float(sigma[0])))
        s, s_next = self.sigmas[j], self.sigmas[j + 1]
        chord = -self.field.displacement(s, s_next) / (s - s_next)
        b, c, h, w = x.shape
        return ArcFlowPolicy(chord.float().unsqueeze(1), torch.zeros(b, 1, 1, h, w), None, s)


def closed_form_errors(field: MixtureField, x: torch.Tensor, sigma_from: float, sigma_to: float):
    """The teacher's one Euler step and the chord against the exact path: ``(B, F)`` each."""
    exact_end = field.displacement(sigma_from, sigma_to)
    scale = exact_end.flatten(1).norm(dim=1)
    euler, chord = [], []
    for f in FRACTIONS:
        s = sigma_from - f * (sigma_from - sigma_to)
        exact = field.displacement(sigma_from, s)
        euler.append((field.velocity(sigma_from) * (s - sigma_from) - exact).flatten(1).norm(dim=1))
        chord.append((f * exact_end - exact).flatten(1).norm(dim=1))
    return torch.stack(euler, 1) / scale[:, None], torch.stack(chord, 1) / scale[:, None]


def test_a_mixture_field_is_followed_exactly_and_straight_steps_miss_by_the_closed_form():
    field = MixtureField()
    nfe = 2
    samplers = {
        "arcflow": trajectory.student_step(field),
        "chord": trajectory.student_step(ChordStudent(field, nfe)),
        trajectory.TEACHER_EULER: trajectory.teacher_euler_step(field),
    }
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    errors = trajectory.probe_batch(
        field, samplers, noise, cond=None, nfe=nfe, substeps=64, fractions=FRACTIONS
    )
    boundaries = student_sigmas(nfe).tolist()
    for j in range(nfe):
        # The arc holds the field's own parameters: it follows the path (up to Heun's O(h^2)).
        assert errors["arcflow"][j].error.max() < 1e-4
        euler, chord = closed_form_errors(field, noise, boundaries[j], boundaries[j + 1])
        assert chord.max() > 0.02  # the field bends: the test is not vacuous
        torch.testing.assert_close(
            errors["arcflow"][j].chord_deviation, chord.float(), atol=1e-4, rtol=0
        )
        # The best straight step lands exactly and misses by the chord deviation inside the step.
        torch.testing.assert_close(errors["chord"][j].error, chord.float(), atol=1e-4, rtol=0)
        torch.testing.assert_close(
            errors[trajectory.TEACHER_EULER][j].error, euler.float(), atol=1e-4, rtol=0
        )


def test_heun_paths_converge_at_second_order():
    field = MixtureField(seed=3)
    noise = torch.zeros(SHAPE)
    exact = field.displacement(1.0, 0.5).float()
    misses = []
    for substeps in (4, 8, 16):
        _, states = trajectory.teacher_path(field, noise, 1.0, 0.5, None, substeps, "heun")
        misses.append(float((states[-1] - exact).norm()))
    assert 3.5 < misses[0] / misses[1] < 4.5 and 3.5 < misses[1] / misses[2] < 4.5
    _, euler = trajectory.teacher_path(field, noise, 1.0, 0.5, None, 16, "euler")
    assert float((euler[-1] - exact).norm()) > 10 * misses[-1]


def test_the_imitation_oracle_bends_where_a_line_cannot():
    """On a mixture field whose rates are the oracle's own, the fitted arc comes far closer to the
    path than the fitted line, which is held near the chord deviation."""
    field = MixtureField()
    field.rates = torch.tensor([-6.0, 2.0], dtype=torch.float64).view(1, 2, 1, 1, 1)
    field.rates = field.rates.expand(SHAPE[0], 2, 1, *SHAPE[2:]).clone()
    field.all_rates = torch.cat([torch.zeros_like(field.rates[:, :1]), field.rates], dim=1)
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))

    def probe(steps: int) -> dict[str, list[trajectory.StepErrors]]:
        samplers = {
            "arc": trajectory.imitation_oracle_step(
                field, 3, log_gamma_range=(-6.0, 2.0), steps=steps
            ),
            "line": trajectory.imitation_oracle_step(field, 1, steps=steps),
        }
        return trajectory.probe_batch(field, samplers, noise, None, substeps=32)

    start, fitted = probe(0), probe(150)
    for j in range(2):
        arc, line = fitted["arc"][j].error.mean(), fitted["line"][j].error.mean()
        assert arc < 0.2 * start["arc"][j].error.mean()
        assert arc < 0.6 * line
        assert line > 0.5 * fitted["line"][j].chord_deviation.mean()


class StraightField:
    """``u(x, sigma) = (x - y) / (sigma + 1/2)``: every path is a straight line towards ``y``
    travelled at constant velocity, ``x(sigma) = y + (x_0 - y) (sigma + 1/2) / (3/2)``."""

    def __init__(self) -> None:
        self.target = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2))

    def teacher_velocity(self, x, sigma, cond):
        return (x - self.target) / (sigma.view(-1, 1, 1, 1) + 0.5)


def test_a_straight_field_has_no_chord_deviation_and_euler_follows_it():
    field = StraightField()
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(4))
    errors = trajectory.probe_batch(
        field,
        {trajectory.TEACHER_EULER: trajectory.teacher_euler_step(field)},
        noise,
        cond=None,
        nfe=2,
        substeps=3,
    )
    for step in errors[trajectory.TEACHER_EULER]:
        assert step.chord_deviation.max() < 1e-5
        assert step.error.max() < 1e-5


def test_summary_intervals_and_outputs(tmp_path):
    mean, low, high = trajectory.mean_interval(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    # t(0.975, 3 dof) = 3.1824 (tables); standard error sqrt(5/3) / 2
    half = 3.182446305284263 * (5 / 3) ** 0.5 / 2
    assert mean == 2.5 and low == pytest.approx(2.5 - half) and high == pytest.approx(2.5 + half)

    field = MixtureField()
    per_sample = trajectory.probe_batch(
        field,
        {"arcflow": trajectory.student_step(field), "euler": trajectory.teacher_euler_step(field)},
        torch.randn(SHAPE),
        cond=None,
        substeps=8,
    )
    result = trajectory.summarize(per_sample, 2, 1.0, 3.2, FRACTIONS, {"fractions": FRACTIONS})
    assert len(result.records) == 2 * 2 * 2 * len(FRACTIONS)  # samplers x steps x metrics
    euler = per_sample["euler"][0].error.double().mean(0).mean()
    assert result.mean_error("euler", 0) == pytest.approx(float(euler))
    assert result.mean_error("arcflow", 1) < 1e-3
    table = trajectory.markdown_table(result)
    assert "chord deviation" in table and table.count("| 1 (") == 3
    lines = trajectory.write_jsonl(result, tmp_path / "p.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["settings"]["fractions"] == list(FRACTIONS)
    assert {json.loads(line)["metric"] for line in lines[1:]} == {"error", "chord_deviation"}
    assert trajectory.plot(result, tmp_path / "p.png").stat().st_size > 10_000
    again = trajectory.read_jsonl(tmp_path / "p.jsonl")
    assert again.records == result.records and again.settings["fractions"] == list(FRACTIONS)
    with pytest.raises(ValueError, match="LABEL@ITERATIONS"):
        trajectory.plot_learning_curves(result, tmp_path / "c.png")


def test_learning_curves_group_checkpoints_of_a_run(tmp_path):
    def record(sampler: str, fraction: float, mean: float, step: int = 0):
        return trajectory.ProbeRecord(
            sampler, step, 1.0, 0.5, fraction, 1 - fraction / 2, "error", mean, 0, 0, 4
        )

    means = {"run@800": (0.2, 0.4), "run@400": (0.5, 0.7), "line@400": (0.6, 0.6), "x": (1, 3)}
    records = [record(n, f, m) for n, ms in means.items() for f, m in zip((0.5, 1.0), ms)]
    records.append(record("run@400", 0.5, 9.0, step=1))  # another step: not in step 0's curve
    result = trajectory.ProbeResult(records, {})
    curves = trajectory.learning_curves(result)
    assert curves == {
        "run": [(400, pytest.approx(0.6)), (800, pytest.approx(0.3))],
        "line": [(400, pytest.approx(0.6))],
    }
    assert trajectory.plot_learning_curves(result, tmp_path / "c.png").stat().st_size > 10_000


def test_bad_settings_are_refused():
    field = MixtureField()
    samplers = {"arcflow": trajectory.student_step(field)}
    with pytest.raises(ValueError, match="fractions"):
        trajectory.probe_batch(field, samplers, torch.zeros(SHAPE), None, fractions=(0.0, 0.5))
    with pytest.raises(ValueError, match="solver"):
        trajectory.teacher_path(field, torch.zeros(SHAPE), 1.0, 0.5, None, 4, "rk4")


@pytest.fixture(scope="module")
def probe_tool():
    if "probe_trajectory" not in sys.modules:
        path = ROOT / "tools/probe_trajectory.py"
        spec = importlib.util.spec_from_file_location("probe_trajectory", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["probe_trajectory"] = module
        spec.loader.exec_module(module)
    return sys.modules["probe_trajectory"]


def test_tool_probes_flux_students(probe_tool, tiny_world_stack, tmp_path, capsys):
    stack = tiny_world_stack
    args = ["--model", str(stack.model), "--adapter", str(stack.adapter)]
    args += ["--linear-adapter", str(stack.linear), "--student", f"again@100={stack.adapter}"]
    args += ["--height", "64", "--width", "64", "--max-sequence-length", "32", "--prompts", "3"]
    args += ["--substeps", "2", "--batch-prompts", "2", "--out", str(tmp_path)]
    assert probe_tool.main(args) == 0
    table = capsys.readouterr().out
    for name in ("teacher_euler", "linear", "arcflow", "again@100"):
        assert f"| {name} |" in table
    records = [json.loads(line) for line in (tmp_path / "probe.jsonl").read_text().splitlines()]
    assert records[0]["settings"]["prompts"] == 3
    by_name = {
        (r["sampler"], r["step"], r["fraction"]): r for r in records[1:] if r["metric"] == "error"
    }
    # The same adapter loaded twice is the same sampler.
    for key, record in by_name.items():
        if key[0] == "again@100":
            assert record["mean"] == pytest.approx(by_name[("arcflow", *key[1:])]["mean"], abs=1e-6)
    assert (tmp_path / "probe.png").is_file() and (tmp_path / "curves.png").is_file()


def test_tool_probes_qwen_image_with_true_cfg(probe_tool, tiny_world_qwen, tmp_path, capsys):
    args = ["--arch", "qwen_image", "--model", str(tiny_world_qwen.model)]
    args += ["--adapter", str(tiny_world_qwen.adapter), "--linear-adapter", "none"]
    args += ["--height", "64", "--width", "64", "--prompts", "2", "--substeps", "2"]
    args += ["--guidance-scale", "4.0", "--fractions", "0.5,1", "--out", str(tmp_path)]
    args += ["--oracle", "2:-30:1", "--oracle-steps", "2", "--steps", "1"]
    assert probe_tool.main(args) == 0
    table = capsys.readouterr().out
    assert "| arcflow |" in table and "| oracle_k2_-30_1 |" in table
    assert "| 0 (" in table and "| 1 (" not in table  # step 0 only
    settings = json.loads((tmp_path / "probe.jsonl").read_text().splitlines()[0])["settings"]
    assert settings["fractions"] == [0.5, 1.0] and settings["arch"] == "qwen_image"


def test_tool_names_bad_input(probe_tool, tmp_path, capsys):
    for args, message in (
        (["--fractions", "0.5,x"], "--fractions"),
        (["--fractions", "0,1"], "(0, 1]"),
        (["--substeps", "0"], "--substeps"),
        (["--oracle", "4:-30"], "K:RMIN:RMAX"),
        (["--oracle", "x"], "K:RMIN:RMAX"),
        (["--steps", "3"], "more than --nfe"),
        (["--student", "k4"], "NAME=FOLDER"),
        (["--student", f"k4={tmp_path / 'none'}"], "no such folder"),
        (["--model", "x", "--adapter", "y", "--linear-adapter", "none"], "--prompts-file"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            probe_tool.main(["--preset", "tiny", *args] if "--model" not in args else args)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
