"""Samplers whose draws depend on where training is, not on how it got there.

`PatchBatchSampler` draws training batch k of epoch e on rank r from a generator seeded by
(seed, e, k, r): an epoch is `patches_per_epoch` patches in total whatever the number of
ranks, the ranks draw different patches, and a resumed run (mid-epoch included) draws what
the uninterrupted run would have drawn. With `repeat_batches=N` (debug=overfit) batch k of
every epoch is batch k mod N of epoch 0, so the same N batches come back for the whole run.
`ResumableLoader` saves and restores the position through Lightning's stateful-dataloader
support. `DistributedEvalSampler` gives each rank
its share of the evaluation files without the padding of `DistributedSampler`, which would
count some files twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch.distributed as dist
from torch.utils.data import DataLoader, Sampler

__all__ = ["DistributedEvalSampler", "PatchBatchSampler", "ResumableLoader", "distributed_rank"]


def distributed_rank() -> tuple[int, int]:
    """(rank, world size) of the initialised process group, or (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class PatchBatchSampler(Sampler[list[int]]):
    """Batches of patch indices, uniform with replacement over `num_patches` starts.

    One epoch is `patches_per_epoch // (world_size * batch_size)` batches per rank, so
    `patches_per_epoch` patches in all (less the remainder of the division). The position is
    a global batch counter: `__iter__` yields the rest of the epoch the counter is in, and
    `ResumableLoader.load_state_dict` sets it on resume. `repeat_batches=N > 0` draws only the
    first N batches of epoch 0, over and over (overfitting a batch to check a model).
    """

    def __init__(
        self,
        num_patches: int,
        patches_per_epoch: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        repeat_batches: int = 0,
    ) -> None:
        if num_patches < 1:
            raise ValueError(f"need at least one patch to draw from, got {num_patches}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.num_patches = int(num_patches)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.batches_per_epoch = int(patches_per_epoch) // (self.world_size * self.batch_size)
        if self.batches_per_epoch < 1:
            raise ValueError(
                f"patches_per_epoch={patches_per_epoch} is less than one batch of "
                f"{self.batch_size} on each of {self.world_size} ranks"
            )
        if int(repeat_batches) < 0:
            raise ValueError(f"repeat_batches must be >= 0, got {repeat_batches}")
        self.repeat_batches = int(repeat_batches)
        self.next_batch = 0
        """Global index (over all epochs) of the next batch `__iter__` starts from."""

    def __len__(self) -> int:
        return self.batches_per_epoch

    def batch(self, epoch: int, k: int) -> list[int]:
        """Batch `k` of `epoch` on this rank: a pure function of (seed, epoch, k, rank)."""
        if self.repeat_batches:
            epoch, k = 0, k % self.repeat_batches
        rng = np.random.default_rng([self.seed % 2**63, epoch, k, self.rank])
        return rng.integers(0, self.num_patches, self.batch_size).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        # the counter moves only as batches are drawn: DataLoader calls iter() twice with workers
        return self._batches(*divmod(self.next_batch, self.batches_per_epoch))

    def _batches(self, epoch: int, first: int) -> Iterator[list[int]]:
        for k in range(first, self.batches_per_epoch):
            self.next_batch = epoch * self.batches_per_epoch + k + 1
            yield self.batch(epoch, k)


class ResumableLoader(DataLoader):
    """A DataLoader over a `PatchBatchSampler` that Lightning saves and restores.

    `batches_done` reports how many training batches were consumed (Lightning's progress,
    exact even with prefetching); without it, the sampler's own counter is saved.
    """

    def __init__(
        self, *args: Any, batches_done: Callable[[], int] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.batch_sampler, PatchBatchSampler):
            raise TypeError("ResumableLoader needs a PatchBatchSampler as batch_sampler")
        self.batches_done = batches_done

    def state_dict(self) -> dict[str, int]:
        sampler = self.batch_sampler
        assert isinstance(sampler, PatchBatchSampler)
        done = self.batches_done() if self.batches_done is not None else sampler.next_batch
        return {"next_batch": int(done), "seed": sampler.seed, "world_size": sampler.world_size}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        sampler = self.batch_sampler
        assert isinstance(sampler, PatchBatchSampler)
        sampler.next_batch = int(state_dict["next_batch"])


class DistributedEvalSampler(Sampler[int]):
    """Every `world_size`-th index from `rank`: each file on exactly one rank, none padded.

    The metrics are per-file means whose sums are reduced over ranks, so this counts every file
    once. With fewer files than ranks every rank takes every file instead: a rank with no
    batch would skip the epoch-end reduction the others wait in, and counting every file
    `world_size` times leaves the means exact.
    """

    def __init__(self, length: int, rank: int, world_size: int) -> None:
        self.length, self.rank, self.world_size = int(length), int(rank), int(world_size)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")

    def _indices(self) -> range:
        if self.length < self.world_size:
            return range(self.length)
        return range(self.rank, self.length, self.world_size)

    def __len__(self) -> int:
        return len(self._indices())

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices())
