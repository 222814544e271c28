"""Train the tiny world's attribute evaluator on freshly rendered training scenes.

    python tools/train_evaluator.py --out checkpoints/tiny-evaluator/ [--steps 1500]

Every step renders a new batch (no scene is seen twice), degraded with blur, noise and colour drift.
At the end it reports caption-match accuracy on held-out scenes, clean and degraded, and writes
that report beside the weights.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from arcflow.errors import run_cli
from arcflow.tinyworld.evaluator import AttributeEvaluator, degrade
from arcflow.tinyworld.scenes import heldout_prompts, render_batch, sample_scene

REPORT_NAME = "training_report.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="checkpoints/tiny-evaluator")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--eval-size", type=int, default=2000, help="held-out scenes to score")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    generator = torch.Generator().manual_seed(args.seed)

    model = AttributeEvaluator().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.lr, total_steps=args.steps)
    start = time.perf_counter()
    progress = tqdm(range(args.steps), desc="evaluator", unit="it")
    for _ in progress:
        scenes = [sample_scene(rng) for _ in range(args.batch_size)]
        images = degrade(render_batch(scenes), generator)
        targets = torch.from_numpy(np.stack([s.slot_targets() for s in scenes]))
        loss = model.loss(images, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        progress.set_postfix(loss=f"{loss.item():.4f}")
    train_seconds = time.perf_counter() - start

    model.eval()
    prompts, scenes = zip(*heldout_prompts(args.eval_size, seed=args.seed))
    images = render_batch(list(scenes))
    clean = model.score(images, list(prompts))
    degraded = model.score(degrade(images, generator), list(prompts))
    model.save_pretrained(args.out)
    report = {
        "train_seconds": round(train_seconds, 1),
        "steps": args.steps,
        "batch_size": args.batch_size,
        "heldout_scenes": args.eval_size,
        "heldout_clean": {k: round(v, 4) for k, v in clean.accuracy.items()},
        "heldout_degraded": {k: round(v, 4) for k, v in degraded.accuracy.items()},
    }
    text = json.dumps(report, indent=2)
    (Path(args.out) / REPORT_NAME).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    sys.exit(run_cli(main))
