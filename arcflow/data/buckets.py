"""Aspect-ratio buckets: every prompt trains at the bucket size nearest its requested aspect ratio,
and every batch holds prompts of one bucket, so a batch shares one latent size."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice

import torch
from torch.utils.data import BatchSampler, Sampler

from arcflow.registry import DATA_SAMPLERS

Size = tuple[int, int]  # (height, width) in pixels

# Latents are packed into 2x2 patches (FLUX and Qwen-Image alike).
PACK = 2


@dataclass(frozen=True)
class AspectBuckets:
    """Bucket sizes in pixels; a prompt without a size trains at the first one.

    Args:
        sizes: ``(height, width)`` of each bucket, multiples of ``2 * vae_scale_factor``.
        vae_scale_factor: pixels per latent (8 for FLUX.1-dev and Qwen-Image).
    """

    sizes: Sequence[Sequence[int]]
    vae_scale_factor: int = 8

    def __post_init__(self) -> None:
        sizes = tuple((int(h), int(w)) for h, w in self.sizes)
        if not sizes:
            raise ValueError("buckets need at least one size")
        step = PACK * self.vae_scale_factor
        bad = [s for s in sizes if s[0] % step or s[1] % step or min(s) <= 0]
        if bad:
            raise ValueError(
                f"bucket sizes {bad} are not positive multiples of {step} (2x2-packed latents of a "
                f"VAE that downsamples by {self.vae_scale_factor})"
            )
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "_log_ratios", [math.log(h / w) for h, w in sizes])

    def assign(self, size: Size | None) -> int:
        """The bucket of a requested size: nearest aspect ratio on a log scale (first on ties)."""
        if size is None:
            return 0
        height, width = size
        if height <= 0 or width <= 0:
            raise ValueError(f"a prompt's size must be positive, got {size}")
        target = math.log(height / width)
        distances = [abs(r - target) for r in self._log_ratios]
        return distances.index(min(distances))

    def assign_all(self, sizes: Sequence[Size | None]) -> list[int]:
        return [self.assign(s) for s in sizes]

    def latent_size(self, bucket: int) -> Size:
        height, width = self.sizes[bucket]
        return height // self.vae_scale_factor, width // self.vae_scale_factor


@DATA_SAMPLERS.register_module()
class BucketBatchSampler(BatchSampler):
    """Batches of one bucket each, from mmengine's ``InfiniteSampler`` index stream for this rank
    (ranks may train different sizes in one iteration, which DDP and FSDP allow).

    Indices are grouped in the order they arrive; a bucket's batch is yielded when it is full. The
    stream is regenerated from the sampler's seed on every iteration (the ``InfiniteSampler`` object
    keeps one generator for its whole life, so iterating it again would continue, not restart), so
    :meth:`resume_at` restores a position by replaying indices, without loading any data. Datasets
    without ``bucket_ids`` form one bucket.
    """

    def __init__(self, sampler: Sampler, batch_size: int, drop_last: bool = True) -> None:
        if not drop_last:
            raise ValueError("BucketBatchSampler only yields full batches (drop_last=True)")
        if not all(hasattr(sampler, a) for a in ("seed", "shuffle", "rank", "world_size", "size")):
            raise TypeError(
                "BucketBatchSampler replays an InfiniteSampler's stream: set "
                "sampler=dict(type='InfiniteSampler') in the dataloader config"
            )
        super().__init__(sampler, batch_size, drop_last)
        self.bucket_ids: list[int] | None = getattr(sampler.dataset, "bucket_ids", None)
        self._skip = 0

    def resume_at(self, batches: int) -> None:
        """Make the next iteration start after its first ``batches`` batches."""
        self._skip = batches

    def _indices(self) -> Iterator[int]:
        """``InfiniteSampler``'s indices for this rank: seeded epochs, every world_size-th index."""
        s = self.sampler
        generator = torch.Generator().manual_seed(s.seed)

        def epochs() -> Iterator[int]:
            while True:
                order = torch.randperm(s.size, generator=generator) if s.shuffle else range(s.size)
                yield from (int(i) for i in order)

        return islice(epochs(), s.rank, None, s.world_size)

    def __iter__(self) -> Iterator[list[int]]:
        skip, self._skip = self._skip, 0
        pending: dict[int, list[int]] = {}
        for index in self._indices():
            bucket = 0 if self.bucket_ids is None else self.bucket_ids[index]
            batch = pending.setdefault(bucket, [])
            batch.append(index)
            if len(batch) == self.batch_size:
                del pending[bucket]
                if skip:
                    skip -= 1
                else:
                    yield batch

    def __len__(self) -> int:
        return self.sampler.size // self.batch_size
