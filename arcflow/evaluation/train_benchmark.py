"""Speed of one distillation iteration, and where its time goes (``tools/benchmark.py --train``).

A config is built as ``tools/train.py`` builds it (model, one batch of its dataset, optimiser
wrapper), without the Runner's logging and checkpoint hooks, and ``train_step`` is timed on the same
batch, iteration numbers advancing as in a run (so the teacher ratio and the draws move on). Each
variant is the config with ``--cfg-options``-style overrides; variants are timed in turns, one
iteration each, so a change of the machine's load reaches all of them alike.

Inside each timed iteration the wall time is split by phase with timers around the student's
calls: ``teacher`` (every teacher forward), ``student_forward`` (every student forward, heads
included), ``backward`` and ``optimizer`` (step and zero_grad); ``other`` is the rest (policy
arithmetic, rollout moves, prompt encoding, Python).
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from arcflow.evaluation.benchmark import Record

PHASES = ("teacher", "student_forward", "backward", "optimizer")

# The reference every speed-up is measured against: the config computed eagerly in float32.
FLOAT32_EAGER: dict[str, Any] = {
    "model.compile": False,
    "model.student.transformer.torch_dtype": "float32",
    "model.student.trainable_dtype": None,
}


@dataclass
class PhaseClock:
    """Seconds spent in each phase during the current iteration."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def wrap(self, phase: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[phase] += time.perf_counter() - start

        return timed


@dataclass
class TrainVariant:
    """One built config: its distiller, batch and optimiser wrapper, with phase timers."""

    name: str
    model: Any
    batch: dict[str, Any]
    optim_wrapper: Any
    clock: PhaseClock
    iteration: int = 0
    warmup_s: float = 0.0
    runs_s: list[float] = field(default_factory=list)
    phases_s: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def step(self, record: bool) -> None:
        from mmengine.logging import MessageHub

        MessageHub.get_current_instance().update_info("iter", self.iteration)
        self.clock.seconds.clear()
        start = time.perf_counter()
        self.model.train_step(self.batch, self.optim_wrapper)
        elapsed = time.perf_counter() - start
        self.iteration += 1
        if record:
            self.runs_s.append(elapsed)
            for phase in PHASES:
                self.phases_s[phase].append(self.clock.seconds.get(phase, 0.0))


def build_variant(config: str, name: str, overrides: Mapping[str, Any]) -> TrainVariant:
    """The config's distiller, the first batch of its dataset and its optimiser wrapper, with
    ``overrides`` (dotted keys, as ``--cfg-options``) applied; phase timers installed."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope
    from torch.utils.data import default_collate

    from arcflow.engine.launch import check_config_keys, check_option_types, load_config
    from arcflow.registry import DATASETS, FUNCTIONS, MODELS

    init_default_scope("arcflow")
    cfg = load_config(config)
    check_option_types(cfg, overrides)
    cfg.merge_from_dict(dict(overrides))
    check_config_keys(cfg)
    torch.manual_seed(cfg.get("randomness", {}).get("seed", 0))
    model = MODELS.build(cfg.model)
    model.train()
    loader = cfg.train_dataloader
    dataset = DATASETS.build(loader.dataset)
    collate_cfg = loader.get("collate_fn", dict(type="default_collate"))
    collate = (
        default_collate
        if collate_cfg["type"] == "default_collate"
        else FUNCTIONS.get(collate_cfg["type"].split(".")[-1])
    )
    batch = collate([dataset[i] for i in range(loader.batch_size)])
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    clock = PhaseClock()
    student = model.student
    student.teacher_velocity = clock.wrap("teacher", student.teacher_velocity)
    student.student_policy = clock.wrap("student_forward", student.student_policy)
    optim_wrapper.backward = clock.wrap("backward", optim_wrapper.backward)
    optim_wrapper.step = clock.wrap("optimizer", optim_wrapper.step)
    optim_wrapper.zero_grad = clock.wrap("optimizer", optim_wrapper.zero_grad)
    return TrainVariant(name, model, batch, optim_wrapper, clock)


def bench_training(
    config: str,
    variants: Mapping[str, Mapping[str, Any]],
    warmup: int = 3,
    repeats: int = 10,
) -> list[Record]:
    """``train/<variant>`` records (median ms and it/s per iteration, the phase split) and
    ``train/speedup/<variant>``: the first variant's median over each other's."""
    built = [build_variant(config, name, overrides) for name, overrides in variants.items()]
    for variant in built:
        start = time.perf_counter()
        for _ in range(warmup):
            variant.step(record=False)
        variant.warmup_s = time.perf_counter() - start
    for _ in range(repeats):
        for variant in built:
            variant.step(record=True)
    records = []
    for variant in built:
        median = statistics.median(variant.runs_s)
        phases = {p: statistics.median(variant.phases_s[p]) * 1e3 for p in PHASES}
        phases["other"] = max(median * 1e3 - sum(phases.values()), 0.0)
        records.append(
            {
                "name": f"train/{variant.name}",
                "config": config,
                "overrides": dict(variants[variant.name]),
                "median_ms": round(median * 1e3, 1),
                "it_per_s": round(1.0 / median, 3),
                "runs_ms": [round(t * 1e3, 1) for t in variant.runs_s],
                "warmup_s": round(variant.warmup_s, 1),
                "phases_ms": {p: round(v, 1) for p, v in phases.items()},
            }
        )
    reference = records[0]
    for record in records[1:]:
        records.append(
            {
                "name": f"train/speedup/{record['name'].split('/', 1)[1]}",
                "ratio": round(reference["median_ms"] / record["median_ms"], 2),
            }
        )
    return records


def train_table(records: list[Record]) -> str:
    """Markdown: one row per variant, its it/s, ratio and phase split (ms per iteration)."""
    ratios = {
        r["name"].removeprefix("train/speedup/"): r["ratio"]
        for r in records
        if r["name"].startswith("train/speedup/")
    }
    head = "| variant | ms / iteration | it / s | speed-up | " + " | ".join((*PHASES, "other"))
    lines = [head + " |", "|---" * (5 + len(PHASES)) + "|"]
    for record in records:
        if "phases_ms" not in record:
            continue
        name = record["name"].removeprefix("train/")
        ratio = ratios.get(name, 1.0)
        cells = [f"{record['phases_ms'][p]:.0f}" for p in (*PHASES, "other")]
        lines.append(
            f"| {name} | {record['median_ms']:.0f} | {record['it_per_s']:.2f} | {ratio:.2f}x | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)
