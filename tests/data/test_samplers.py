"""Samplers: training batches from their position (seed, epoch, batch, rank), resumable, and
evaluation files dealt to ranks without padding."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch.utils.data import TensorDataset

from audio_superres.data.samplers import (
    DistributedEvalSampler,
    PatchBatchSampler,
    ResumableLoader,
)


def test_epoch_is_patches_per_epoch_over_all_ranks():
    ranks = [PatchBatchSampler(1000, 64, 4, seed=3, rank=r, world_size=2) for r in (0, 1)]
    batches = [list(s) for s in ranks]
    assert [len(b) for b in batches] == [8, 8] and [len(s) for s in ranks] == [8, 8]
    assert all(len(b) == 4 and all(0 <= i < 1000 for i in b) for rank in batches for b in rank)
    assert batches[0] != batches[1]  # the ranks draw different patches
    single = PatchBatchSampler(1000, 64, 4, seed=3)
    assert len(single) == 16
    with pytest.raises(ValueError, match="less than one batch"):
        PatchBatchSampler(1000, 7, 4, seed=3, rank=0, world_size=2)


def test_epochs_differ_and_a_restored_position_continues():
    whole = PatchBatchSampler(1000, 32, 4, seed=5)
    stream = list(whole) + list(whole)  # two epochs of 8 batches
    assert stream[:8] != stream[8:]
    again = PatchBatchSampler(1000, 32, 4, seed=5)
    again.next_batch = 5  # resume mid-epoch: the rest of epoch 0, then epoch 1
    assert list(again) == stream[5:8] and list(again) == stream[8:]
    assert PatchBatchSampler(1000, 32, 4, seed=6).batch(0, 0) != stream[0]


def test_loader_saves_the_batches_done_not_the_prefetched_ones():
    data = TensorDataset(torch.arange(100.0))
    sampler = PatchBatchSampler(100, 40, 4, seed=1)
    done = {"n": 0}
    loader = ResumableLoader(data, batch_sampler=sampler, batches_done=lambda: done["n"])
    it = iter(loader)
    first = [next(it) for _ in range(3)]  # a prefetching loop drew 3 batches, trained on 2
    done["n"] = 2
    state = loader.state_dict()
    assert state["next_batch"] == 2
    fresh = PatchBatchSampler(100, 40, 4, seed=1)
    resumed = ResumableLoader(data, batch_sampler=fresh)
    resumed.load_state_dict(state)
    assert torch.equal(next(iter(resumed))[0], first[2][0])
    # a DataLoader with workers calls iter() twice: the position moves only as batches are drawn
    twice = ResumableLoader(
        data, batch_sampler=PatchBatchSampler(100, 40, 4, seed=1), num_workers=1
    )
    assert torch.equal(next(iter(twice))[0], first[0][0])


@pytest.mark.parametrize("length", [0, 1, 3, 7, 8])
def test_eval_sampler_counts_every_file_equally(length):
    world = 4
    parts = [list(DistributedEvalSampler(length, r, world)) for r in range(world)]
    counts = Counter(i for p in parts for i in p)
    assert set(counts) == set(range(length))
    assert len(set(counts.values())) <= 1  # every file the same number of times
    if length >= world:
        assert all(c == 1 for c in counts.values()) and all(parts)  # once, every rank busy
