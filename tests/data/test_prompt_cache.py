"""The prompt cache: 1 rank == 2 gloo ranks, resume, cached == fresh embeddings, corrupt shards,
aspect-ratio buckets, and the configs that train from it. Tiny FLUX / Qwen-Image text encoders."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from arcflow.data.buckets import AspectBuckets, BucketBatchSampler
from arcflow.data.cache_builder import CacheSettings, build_prompt_cache
from arcflow.data.prompt_cache import (
    INDEX,
    CorruptCacheError,
    PromptCacheDataset,
    collate_prompts,
    shard_name,
)
from arcflow.data.prompts import PromptDataset, read_prompt_records
from arcflow.engine.launch import prepare_config
from arcflow.models.text_encoders import PromptEncoder
from arcflow.tinyworld.architectures import FLUX_MAX_SEQUENCE_LENGTH
from arcflow.tinyworld.datasets import ScenePromptDataset
from arcflow.tinyworld.stack import assemble_flux_stack, assemble_qwen_stack

ROOT = Path(__file__).resolve().parents[2]
LONG_PROMPT = " ".join(["a red circle"] * 20)  # 60 T5 tokens: over the budget of 32
BUCKETS = dict(sizes=[(32, 32), (24, 40), (40, 24)], vae_scale_factor=4)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Tiny text stacks, 1,000 scene captions (plus 2 empty lines and 1 over-long prompt) and a
    config naming the FLUX encoder."""
    root = tmp_path_factory.mktemp("prompt_cache")
    scenes = ScenePromptDataset(seed=0)
    prompts = [scenes[i]["prompt"] for i in range(999)]
    lines = prompts[:500] + ["", "   "] + prompts[500:] + [LONG_PROMPT]
    (root / "prompts.txt").write_text("\n".join(lines) + "\n")
    flux = assemble_flux_stack(root / "tiny-flux")
    config = root / "cache_flux.py"
    encoder = dict(arch="flux", pretrained=str(flux), max_sequence_length=FLUX_MAX_SEQUENCE_LENGTH)
    config.write_text(f"model = dict(prompt_encoder={encoder!r})\n")
    return dict(root=root, flux=flux, qwen=assemble_qwen_stack(root / "tiny-qwen"),
                config=config, encoder=encoder)  # fmt: skip


def cache_cli(world, out: Path, nproc: int) -> None:
    args = [str(world["config"]), "--prompts", str(world["root"] / "prompts.txt")]
    args += ["--out", str(out), "--prompts-per-shard", "128", "--batch-size", "32"]
    args += ["--padding", "trim"]  # as build() below: CacheSettings trims unless told
    if nproc == 1:
        cmd = [sys.executable, "tools/cache_prompts.py", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        cmd += [f"--nproc_per_node={nproc}", "tools/cache_prompts.py", *args]
        cmd += ["--launcher", "pytorch"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def build(world, out: Path, **settings) -> None:
    """What ``cache_cli`` does, in this process."""
    encoder = PromptEncoder(**world["encoder"])
    records = read_prompt_records(world["root"] / "prompts.txt")
    settings = CacheSettings(prompts_per_shard=128, batch_size=32, **settings)
    build_prompt_cache(encoder, records, out, settings, world["encoder"], progress=False)


@pytest.fixture(scope="module")
def flux_cache(world):
    out = world["root"] / "one_rank"
    build(world, out)
    return out


@pytest.mark.slow
def test_two_gloo_ranks_write_the_same_cache_as_one_rank(world, flux_cache):
    index = json.loads((flux_cache / INDEX).read_text())
    assert index["num_prompts"] == 1000 and len(index["shards"]) == 8
    assert index["skipped_empty"] == 2 and index["truncated"] == 1
    two = world["root"] / "two_ranks"
    cache_cli(world, two, nproc=2)
    assert files(two) == files(flux_cache)


def test_interrupted_run_resumes_to_the_same_shards(world, flux_cache, tmp_path):
    out = tmp_path / "cache"
    shutil.copytree(flux_cache, out)
    # An interruption: no index yet, two shards never written, one cut short, a partial temp file.
    (out / INDEX).unlink()
    for shard in (2, 7):
        (out / shard_name(shard)).unlink()
    damaged = out / shard_name(4)
    damaged.write_bytes(damaged.read_bytes()[:1000])
    (out / f".{shard_name(2)}.tmp-12345").write_bytes(b"partial")
    kept = {s: (out / shard_name(s)).stat().st_mtime_ns for s in (0, 1, 3, 5, 6)}
    build(world, out)
    assert files(out) == files(flux_cache)
    assert kept == {s: (out / shard_name(s)).stat().st_mtime_ns for s in kept}, "re-encoded"
    with pytest.raises(ValueError, match="storage"):
        build(world, out, storage="float8_e4m3fn")


def test_corrupt_shard_is_named_before_training(flux_cache, tmp_path):
    out = tmp_path / "cache"
    shutil.copytree(flux_cache, out)
    shard = out / shard_name(3)
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(CorruptCacheError, match=shard_name(3)):
        PromptCacheDataset(str(out))
    shard.unlink()
    with pytest.raises(CorruptCacheError, match="missing"):
        PromptCacheDataset(str(out))


def cached_and_fresh(world, tmp_path, arch: str, count: int = 12, **settings):
    """A collated batch of the cache of ``count`` prompts, and the same prompts freshly encoded."""
    stack, length = (
        (world["flux"], FLUX_MAX_SEQUENCE_LENGTH) if arch == "flux" else (world["qwen"], 64)
    )
    encoder = PromptEncoder(arch, str(stack), max_sequence_length=length)
    records = read_prompt_records(world["root"] / "prompts.txt")
    records.prompts, records.sizes = records.prompts[-count:], records.sizes[-count:]
    settings = CacheSettings(prompts_per_shard=5, batch_size=3, **settings)
    build_prompt_cache(encoder, records, tmp_path, settings, {"arch": arch}, progress=False)
    dataset = PromptCacheDataset(str(tmp_path))
    batch = collate_prompts([dataset[i] for i in range(len(dataset))])
    assert batch["prompt"] == records.prompts
    return batch, encoder(records.prompts), encoder


BF16 = dict(rtol=2**-8, atol=1e-6)  # bfloat16 rounding of the stored values


def test_cached_flux_embeddings_equal_fresh_ones(world, tmp_path):
    cached, fresh, encoder = cached_and_fresh(world, tmp_path / "trim", "flux")
    assert set(cached) == {"prompt_embeds", "pooled_prompt_embeds", "prompt"}
    torch.testing.assert_close(
        cached["pooled_prompt_embeds"].float(), fresh["pooled_prompt_embeds"], **BF16
    )
    # Trimmed T5 padding: every prompt token as encoded, zeros after it, at the encoded length.
    assert cached["prompt_embeds"].shape == fresh["prompt_embeds"].shape
    for i, count in enumerate(encoder.token_counts(cached["prompt"])):
        n = min(count, encoder.token_limit)
        torch.testing.assert_close(
            cached["prompt_embeds"][i, :n].float(), fresh["prompt_embeds"][i, :n], **BF16
        )
        assert not cached["prompt_embeds"][i, n:].any()
    cached, fresh, _ = cached_and_fresh(world, tmp_path / "keep", "flux", keep_padding=True)
    torch.testing.assert_close(cached["prompt_embeds"].float(), fresh["prompt_embeds"], **BF16)


@pytest.mark.parametrize("storage", ["bfloat16", "float8_e4m3fn"])
def test_cached_qwen_embeddings_equal_fresh_ones(world, tmp_path, storage):
    cached, fresh, _ = cached_and_fresh(world, tmp_path, "qwen_image", storage=storage)
    assert (tmp_path / "shared.safetensors").is_file()  # the negative prompt, stored once
    assert cached["negative_prompt_embeds"].shape[0] == 1
    for key in ("prompt_embeds", "negative_prompt_embeds"):
        mask = fresh[f"{key}_mask"][:1] if key.startswith("negative") else fresh[f"{key}_mask"]
        assert torch.equal(cached[f"{key}_mask"], mask)
        got, want = cached[key].float(), fresh[key][: len(mask)]
        if storage == "bfloat16":
            torch.testing.assert_close(got, want, **BF16)
        else:  # e4m3: 3 mantissa bits, one scale per prompt
            scale = want.abs().amax(dim=(1, 2), keepdim=True) / 448
            assert ((got - want).abs() <= want.abs() * 2**-4 + scale * 2**-6).all()


def test_buckets_assign_by_aspect_ratio_and_check_sizes():
    buckets = AspectBuckets(**BUCKETS)
    assert [buckets.assign(s) for s in (None, (500, 500), (300, 520), (90, 50))] == [0, 0, 1, 2]
    assert buckets.latent_size(1) == (6, 10)
    with pytest.raises(ValueError, match="multiples of 8"):
        AspectBuckets(sizes=[(32, 36)], vae_scale_factor=4)


def test_bucketed_batches_share_a_size_and_resume_without_loading(tmp_path):
    from mmengine.dataset import InfiniteSampler

    rng = np.random.default_rng(0)
    rows = [{"prompt": f"p{i}", "height": int(h), "width": int(w)}
            for i, (h, w) in enumerate(rng.integers(16, 64, size=(60, 2)))]  # fmt: skip
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    dataset = PromptDataset(str(tmp_path / "p.jsonl"), buckets=BUCKETS)
    assert len(set(dataset.bucket_ids)) == 3

    def loader(**kwargs) -> tuple[DataLoader, BucketBatchSampler]:
        sampler = BucketBatchSampler(InfiniteSampler(dataset, seed=3), batch_size=4)
        return DataLoader(dataset, batch_sampler=sampler, **kwargs), sampler

    def take(loader: DataLoader, steps: int) -> list[dict]:
        batches = iter(loader)
        return [next(batches) for _ in range(steps)]

    batches = take(loader()[0], 20)
    for batch in batches:
        assert len({tuple(s.tolist()) for s in batch["latent_size"]}) == 1
    assert len({tuple(b["latent_size"][0].tolist()) for b in batches}) == 3
    # Resume as the checkpoint hook does: after workers began prefetching from a first iterator.
    resumed, sampler = loader(num_workers=2, persistent_workers=True)
    take(resumed, 2)
    sampler.resume_at(7)
    assert [b["prompt"] for b in take(resumed, 13)] == [b["prompt"] for b in batches[7:]]
    # One bucket: the InfiniteSampler's own order.
    plain = PromptDataset([f"p{i}" for i in range(10)])
    first = list(islice(iter(BucketBatchSampler(InfiniteSampler(plain, seed=3), 2)), 5))
    assert sum(first, []) == list(islice(iter(InfiniteSampler(plain, seed=3)), 10))


def test_prompt_files_count_empty_entries_and_read_sizes(tmp_path):
    (tmp_path / "a.csv").write_text('prompt,height,width\n"a, red",512,768\n,,\nb,,\n')
    (tmp_path / "b.jsonl").write_text(
        '{"prompt": "c", "height": 64, "width": 32}\n\n{"prompt": " "}\n'
    )
    records = read_prompt_records([tmp_path / "a.csv", tmp_path / "b.jsonl"])
    assert records.prompts == ["a, red", "b", "c"]
    assert records.sizes == [(512, 768), None, (64, 32)]
    assert records.skipped_empty == 3
    (tmp_path / "c.jsonl").write_text('{"prompt": "d", "height": 64}\n')
    with pytest.raises(ValueError, match="both"):
        read_prompt_records(tmp_path / "c.jsonl")
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        (tmp_path / "d.parquet").write_bytes(b"")
        with pytest.raises(ImportError, match="pyarrow"):
            read_prompt_records(tmp_path / "d.parquet")


def test_offloaded_encoder_stays_out_of_the_model(world):
    kwargs = dict(arch="flux", pretrained=str(world["flux"]), max_sequence_length=8)
    resident, offloaded = PromptEncoder(**kwargs), PromptEncoder(**kwargs, offload=True)
    assert not list(offloaded.parameters()) and list(resident.parameters())
    prompts = ["a red circle", "a blue square on the left"]
    for key, value in resident(prompts).items():
        torch.testing.assert_close(offloaded(prompts)[key], value)


@pytest.mark.parametrize("arch", ["flux", "qwen"])
def test_released_configs_train_from_the_cache_format(arch, tmp_path):
    config = f"configs/{arch}/arcflow_{arch}_cached.py"
    header = (ROOT / config).read_text()
    assert f"tools/cache_prompts.py configs/{arch}/arcflow_{arch}.py" in header
    cfg = prepare_config(str(ROOT / config), work_dir=str(tmp_path))
    loader = cfg.train_dataloader
    assert loader.dataset["type"] == "PromptCacheDataset"
    assert loader.batch_sampler["type"] == "BucketBatchSampler"
    assert loader.collate_fn["type"] == "arcflow.collate_prompts"
    assert cfg.model.prompt_encoder["offload"] is True  # validation prompts only
    buckets = AspectBuckets(**loader.dataset["buckets"])
    assert buckets.latent_size(0) == tuple(cfg.model.latent_size)
    ci = prepare_config(str(ROOT / "configs/tiny/arcflow_ci_flux.py"), work_dir=str(tmp_path))
    assert ci.train_dataloader.dataset["type"] == "PromptCacheDataset"
