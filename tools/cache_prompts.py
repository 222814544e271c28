"""Encode prompt files once with a config's text encoder(s) into a prompt cache for training.

    python tools/cache_prompts.py configs/flux/arcflow_flux.py \\
        --prompts data/prompts/train.txt --out data/prompt_cache/flux
    torchrun --nproc_per_node=8 tools/cache_prompts.py configs/qwen/arcflow_qwen.py \\
        --prompts data/prompts/part-*.jsonl --out data/prompt_cache/qwen --launcher pytorch

Prompt files: .txt (one per line), .jsonl / .csv / .parquet (a "prompt" column, optional "height"
and "width" for aspect-ratio buckets). The encoder is the config's model.prompt_encoder. Re-running
an interrupted command resumes it; any number of ranks writes the same files. Train from the cache
with configs/flux/arcflow_flux_cached.py or configs/qwen/arcflow_qwen_cached.py.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import timedelta

import torch
import torch.distributed as dist
from diffusers.utils import logging as diffusers_logging
from mmengine.config import DictAction

from arcflow.data.cache_builder import CacheSettings, build_prompt_cache
from arcflow.data.prompts import read_prompt_records
from arcflow.engine.launch import load_config
from arcflow.errors import run_cli
from arcflow.models.text_encoders import PromptEncoder


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("config", help="training config whose model.prompt_encoder to use")
    parser.add_argument("--prompts", nargs="+", required=True, help="prompt files, in order")
    parser.add_argument("--out", required=True, help="cache folder")
    parser.add_argument("--launcher", choices=["none", "pytorch"], default="none")
    parser.add_argument("--batch-size", type=int, default=16, help="prompts encoded together")
    parser.add_argument(
        "--prompts-per-shard",
        type=int,
        help="default: 64 with padding kept (FLUX: 512 x 4096 bf16 = 4 MB a prompt, ~270 MB "
        "shards), 256 trimmed (~1 MB a prompt at ~128 tokens)",
    )
    parser.add_argument("--storage", choices=["bfloat16", "float8_e4m3fn"], default="bfloat16")
    parser.add_argument(
        "--padding",
        choices=["auto", "keep", "trim"],
        default="auto",
        help="auto: keep for FLUX (its T5 runs unmasked, so the transformer sees the padding "
        "features: only keeping them is exact), trim for Qwen-Image (masked: trimming is exact); "
        "trim on FLUX is ~4x-8x smaller but feeds zeros where inference feeds T5's padding",
    )
    parser.add_argument("--device", help="default: cuda (this rank's GPU) if available, else cpu")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, help="override keys: a.b=1")
    parser.add_argument("--local-rank", "--local_rank", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    cfg = load_config(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    encoder_cfg = cfg.model.get("prompt_encoder")
    if not encoder_cfg:
        raise SystemExit(f"{args.config} has no model.prompt_encoder to encode prompts with")
    encoder_cfg = {k: v for k, v in encoder_cfg.items() if k != "offload"}

    cuda = torch.cuda.is_available() and args.device in (None, "cuda")
    rank, world_size = 0, 1
    if args.launcher == "pytorch":
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        # Ranks meet only at the start and the end; an uneven resume may keep some waiting long.
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(hours=12))
        rank, world_size = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", torch.cuda.current_device()) if cuda else args.device or "cpu"

    # The pipelines warn about every truncated prompt; they are counted and reported instead.
    diffusers_logging.set_verbosity_error()
    records = read_prompt_records(args.prompts)
    encoder = PromptEncoder(**encoder_cfg).to(device)
    keep_padding = args.padding == "keep" or (args.padding == "auto" and encoder.arch == "flux")
    settings = CacheSettings(
        prompts_per_shard=args.prompts_per_shard or (64 if keep_padding else 256),
        batch_size=args.batch_size,
        storage=args.storage,
        keep_padding=keep_padding,
    )
    index = build_prompt_cache(
        encoder,
        records,
        args.out,
        settings,
        encoder_info=dict(encoder_cfg),
        rank=rank,
        world_size=world_size,
        barrier=dist.barrier if world_size > 1 else lambda: None,
    )
    if index is not None:
        total = sum(s["bytes"] for s in index["shards"])
        print(
            f"{index['num_prompts']} prompts in {len(index['shards'])} shards, {total / 1e9:.3f} "
            f"GB ({total / index['num_prompts'] / 1e3:.1f} kB a prompt) in {args.out}; "
            f"{index['skipped_empty']} empty entries skipped, {index['truncated']} prompts "
            f"truncated to {encoder.token_limit} tokens"
        )
    if world_size > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(run_cli(main))
