"""Training curves of mmengine runs (scalars.json or TensorBoard event files) as one PNG.

    python tools/plot_training_curves.py                                    # every run in work_dirs
    python tools/plot_training_curves.py work_dirs/arcflow_tiny_flux work_dirs/linear_tiny_flux \
        --keys loss teacher_ratio grad_norm --out docs/images/curves.png

A path may be a run folder (searched for ``*/vis_data/scalars.json``, else for TensorBoard
``events.out.tfevents.*``), a ``scalars.json`` or an event file. The timestamped folders of one run
(a resumed run writes a new one) are merged, later rows winning. One panel per scalar, one line per
run: raw values faint, their exponential moving average (``--smooth``) solid (schedules such as
``lr`` and ``teacher_ratio`` are drawn raw); loss-like panels use a log scale when all values are
positive.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from arcflow.errors import run_cli

Series = dict[str, dict[int, float]]  # scalar name -> {iteration: value}

NOT_CURVES = {"step", "iter", "epoch", "time", "data_time"}
PREFERRED = ("loss", "loss_seg0", "loss_seg1", "teacher_ratio", "grad_norm", "lr")
LOG_SCALE_HINTS = ("loss", "grad_norm")
# Schedules are exact values, not noisy measurements: smoothing would only distort them.
SCHEDULES = {"lr", "base_lr", "teacher_ratio", "ema_beta"}


def run_name(path: Path) -> str:
    """``work_dirs/<run>/<timestamp>/vis_data/<file>`` -> ``<run>``; else the parent's name."""
    parts = path.parts
    if "vis_data" in parts:
        index = len(parts) - 1 - parts[::-1].index("vis_data")
        if index >= 2:
            return parts[index - 2]
    return path.parent.name


def log_files(path: Path) -> list[Path]:
    """The scalars.json files of a run folder, else its TensorBoard event files, sorted by time."""
    if path.is_file():
        return [path]
    found = sorted(path.rglob("vis_data/scalars.json")) or sorted(
        path.rglob("events.out.tfevents.*")
    )
    if not found:
        raise FileNotFoundError(f"no vis_data/scalars.json or TensorBoard events under {path}")
    return found


def read_scalars_json(path: Path, into: Series) -> None:
    """One JSON object per line with ``step`` or ``iter``; numeric entries become points."""
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        step = row.get("step", row.get("iter"))
        if step is None:
            continue
        for key, value in row.items():
            if key in NOT_CURVES or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            into.setdefault(key, {})[int(step)] = float(value)


def read_events(path: Path, into: Series) -> None:
    """Every scalar tag of a TensorBoard event file."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(path), size_guidance={"scalars": 0})
    events.Reload()
    for tag in events.Tags()["scalars"]:
        if tag in NOT_CURVES:
            continue
        for event in events.Scalars(tag):
            into.setdefault(tag, {})[int(event.step)] = float(event.value)


def load_runs(paths: list[Path]) -> dict[str, Series]:
    """``{run name: {scalar: {iteration: value}}}`` of the given runs or files."""
    runs: dict[str, Series] = {}
    for path in paths:
        for file in log_files(path):
            series = runs.setdefault(run_name(file), {})
            reader = read_scalars_json if file.name.endswith(".json") else read_events
            reader(file, series)
    return runs


def ema(values: list[float], smooth: float) -> list[float]:
    """Exponential moving average with TensorBoard's start-up debiasing."""
    out, average = [], 0.0
    for i, value in enumerate(values, start=1):
        average = smooth * average + (1 - smooth) * value
        out.append(average / (1 - smooth**i) if smooth > 0 else value)
    return out


def choose_keys(runs: dict[str, Series], keys: list[str] | None, limit: int = 6) -> list[str]:
    present = {key for series in runs.values() for key in series}
    if keys:
        missing = sorted(set(keys) - present)
        if missing:
            raise KeyError(f"no run logged {missing}; logged: {sorted(present)}")
        return keys
    chosen = [key for key in PREFERRED if key in present]
    return chosen or sorted(present)[:limit]


def plot_curves(runs: dict[str, Series], keys: list[str], out: Path, smooth: float = 0.6) -> None:
    """One panel per key (two columns), one line per run."""
    cols = min(len(keys), 2)
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 2.8 * rows), dpi=90, squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, key in zip(axes.flat, keys):
        positive = True
        for (name, series), color in zip(sorted(runs.items()), colors * len(runs)):
            if key not in series:
                continue
            steps = sorted(series[key])
            values = [series[key][s] for s in steps]
            positive &= min(values) > 0
            if key in SCHEDULES or smooth == 0:
                ax.plot(steps, values, color=color, lw=1.6, label=name)
                continue
            ax.plot(steps, values, color=color, alpha=0.25, lw=1)
            ax.plot(steps, ema(values, smooth), color=color, lw=1.6, label=name)
        if positive and any(hint in key for hint in LOG_SCALE_HINTS):
            ax.set_yscale("log")
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("iteration", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="run folders or log files")
    parser.add_argument("--keys", nargs="+", help=f"scalars to plot (default: {PREFERRED})")
    parser.add_argument("--smooth", type=float, default=0.6, help="EMA weight in [0, 1)")
    parser.add_argument("--out", type=Path, default=Path("training_curves.png"))
    args = parser.parse_args(argv)
    if not 0 <= args.smooth < 1:
        parser.error("--smooth must lie in [0, 1)")
    paths = args.paths or sorted(Path("work_dirs").glob("*/*/vis_data/scalars.json"))
    if not paths:
        parser.error("no run given and no work_dirs/*/*/vis_data/scalars.json found")
    runs = load_runs(paths)
    keys = choose_keys(runs, args.keys)
    plot_curves(runs, keys, args.out, args.smooth)
    print(f"wrote {args.out}: {len(runs)} run(s), {', '.join(keys)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
