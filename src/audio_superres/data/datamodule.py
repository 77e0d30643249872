"""SuperResDataModule: random high-res patches for training, whole utterances for evaluation.

Only high-res audio leaves this module: the LightningModule makes the low-res input on the
fly (`make_lowres`), so the filter and ratio can change without touching the data. Patches are
sliced from the memory-mapped cache, so loading needs no worker processes on CPU.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from audio_superres.data.cache import CachedCorpus, build_cache
from audio_superres.data.corpora import DEFAULT_VAL_FILES, AudioFile, Corpus
from audio_superres.data.samplers import (
    DistributedEvalSampler,
    PatchBatchSampler,
    ResumableLoader,
    distributed_rank,
)
from audio_superres.errors import ConfigError, DataError
from audio_superres.utils import positive_int

__all__ = ["PatchDataset", "SuperResDataModule", "UtteranceDataset", "collate_utterances"]

MIN_EVAL_FRAMES_PER_RATIO = 64
"""Eval utterances need >= 64 low-res samples: the zero-phase low-pass (sosfiltfilt pads ~27
samples per side) and the cubic spline both need some length to be meaningful."""


class PatchDataset(Dataset):
    """Every valid patch start across the given utterances, as one flat index space.

    Sampling indices uniformly (with replacement) then draws patches uniformly over all audio,
    long utterances proportionally more often, and the sampler (`PatchBatchSampler`), not the
    dataset, holds the randomness, so results are reproducible with any worker count.
    """

    def __init__(self, cache: CachedCorpus, indices: Sequence[int], patch_len: int) -> None:
        self.cache = cache
        self.patch_len = int(patch_len)
        usable = [i for i in indices if cache.entries[i].length >= self.patch_len]
        if not usable:
            longest = max((cache.entries[i].length for i in indices), default=0)
            raise DataError(
                f"{cache.root}: no training utterance is at least patch_len={self.patch_len} "
                f"samples long (longest: {longest}); lower data.patch_len"
            )
        self.offsets = np.array([cache.entries[i].offset for i in usable], dtype=np.int64)
        starts = np.array(
            [cache.entries[i].length - self.patch_len + 1 for i in usable], dtype=np.int64
        )
        self.cumulative = np.cumsum(starts)
        self.utterances = usable

    def __len__(self) -> int:
        return int(self.cumulative[-1])

    def __getitem__(self, k: int) -> torch.Tensor:
        if not 0 <= k < len(self):
            raise IndexError(f"patch index {k} out of range [0, {len(self)})")
        u = int(np.searchsorted(self.cumulative, k, side="right"))
        start = k - (int(self.cumulative[u - 1]) if u > 0 else 0)
        begin = int(self.offsets[u]) + start
        patch = np.array(self.cache.audio[begin : begin + self.patch_len], dtype=np.float32)
        return torch.from_numpy(patch)


class UtteranceDataset(Dataset):
    """Whole utterances for validation/testing, cropped to a multiple of `ratio`."""

    def __init__(self, cache: CachedCorpus, indices: Sequence[int], ratio: int) -> None:
        self.cache = cache
        self.indices = list(indices)
        self.ratio = int(ratio)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> dict[str, Any]:
        i = self.indices[k]
        e = self.cache.entries[i]
        n = e.length - e.length % self.ratio
        hr = np.array(self.cache.get(i)[:n], dtype=np.float32)
        return {"hr": torch.from_numpy(hr), "name": e.path, "speaker": e.speaker}


def collate_utterances(items: list[dict[str, Any]]) -> dict[str, Any]:
    """{"hr": (B, T), "name": [str], "speaker": [str]}; utterances differ in length, so B=1."""
    lengths = {len(it["hr"]) for it in items}
    if len(lengths) != 1:
        raise ValueError(f"cannot batch utterances of different lengths {sorted(lengths)}")
    return {
        "hr": torch.stack([it["hr"] for it in items]),
        "name": [it["name"] for it in items],
        "speaker": [it["speaker"] for it in items],
    }


def _evenly_spaced(n: int, k: int | None) -> list[int]:
    """k of range(n) spread evenly (first and last included), so every speaker is seen."""
    if k is None or k >= n:
        return list(range(n))
    if k <= 0:
        return []
    return sorted({int(round(v)) for v in np.linspace(0, n - 1, k)})


class SuperResDataModule(L.LightningDataModule):
    """Speaker-split data for super-resolution at `sample_rate`, `ratio`x.

    `corpus` is a Corpus class or partial taking `root` and `test_speakers`; with `root=None`
    the corpus default root is used (the demo corpus). `test_speakers="*"` sends everything to
    the test split (evaluation only). Validation is the corpus's "val" split (`val_max_files`
    utterances of the training speakers, or the corpus's own validation group), never a test
    file. Training draws `patches_per_epoch` patches per epoch over all ranks from `seed`
    (default: the seed `L.seed_everything` set), by position, so resumed runs continue.
    """

    def __init__(
        self,
        corpus: Callable[..., Corpus],
        root: str | None,
        test_speakers: list[str] | str,
        sample_rate: int,
        ratio: int,
        patch_len: int = 8192,
        batch_size: int = 16,
        num_workers: int = 0,
        patches_per_epoch: int = 4096,
        val_max_files: int | None = 32,
        cache_dir: str = "data/cache",
        test_max_files: int | None = None,
        prepare_workers: int = 2,
        seed: int | None = None,
        overfit_batches: int = 0,
    ) -> None:
        super().__init__()
        for name, value in (("ratio", ratio), ("sample_rate", sample_rate)):
            if positive_int(value) is None:  # ratio=four, sample_rate=0: named, not int()'s
                raise ConfigError(f"{name} must be a positive integer, got {value}")
        self.ratio = int(ratio)
        self.patch_len = int(patch_len) - int(patch_len) % self.ratio
        if self.patch_len < self.ratio:
            raise ConfigError(f"patch_len={patch_len} is shorter than one low-res sample (ratio)")
        if batch_size < 1 or patches_per_epoch < batch_size:
            raise ConfigError(
                f"need 1 <= batch_size <= patches_per_epoch, got {batch_size}, {patches_per_epoch}"
            )
        if root is None:
            self.corpus = corpus(test_speakers=test_speakers)
        else:
            self.corpus = corpus(root=root, test_speakers=test_speakers)
        self.sample_rate = int(sample_rate)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.patches_per_epoch = int(patches_per_epoch)
        self.val_max_files = DEFAULT_VAL_FILES if val_max_files is None else int(val_max_files)
        self.seed = seed
        if isinstance(overfit_batches, bool) or int(overfit_batches) != overfit_batches or (
            overfit_batches < 0
        ):
            raise ConfigError(
                f"overfit_batches must be a whole number of batches >= 0, got {overfit_batches!r}"
            )
        self.overfit_batches = int(overfit_batches)
        self.test_max_files = test_max_files
        self.cache_dir = cache_dir
        self.prepare_workers = int(prepare_workers)
        self.cache: CachedCorpus | None = None
        self.train_indices: list[int] = []
        self.test_indices: list[int] = []
        self.val_indices: list[int] = []
        self.short_eval: list[str] = []
        self._train_set: PatchDataset | None = None

    def prepare_data(self) -> None:
        """Build the corpus if it needs building, then decode it into the cache (rank 0 only)."""
        self.corpus.prepare()
        build_cache(self.corpus, self.sample_rate, self.cache_dir, self.prepare_workers)

    def setup(self, stage: str | None = None) -> None:
        """Open the cache and split it by speaker (every rank; cheap after the first call)."""
        if self.cache is None:
            cache = build_cache(self.corpus, self.sample_rate, self.cache_dir, self.prepare_workers)
            position = {e.path: i for i, e in enumerate(cache.entries)}
            files = [AudioFile(self.corpus.root / e.path, e.speaker) for e in cache.entries]
            split = self.corpus.split(files, val_files=self.val_max_files)
            self.train_indices = sorted(
                position[self.corpus.relative(f.path)] for f in split["train"]
            )
            min_len = MIN_EVAL_FRAMES_PER_RATIO * self.ratio

            def held_out(name: str) -> list[int]:
                """Indices of a held-out split, sorted by path, without too-short files."""
                ids = sorted(
                    (position[self.corpus.relative(f.path)] for f in split.get(name, ())),
                    key=lambda i: cache.entries[i].path,
                )
                short = [cache.entries[i].path for i in ids if cache.entries[i].length < min_len]
                if short:
                    shown = ", ".join(short[:10])
                    more = f" and {len(short) - 10} more" if len(short) > 10 else ""
                    warnings.warn(
                        f"{self.corpus.root}: {len(short)} {name} file(s) shorter than "
                        f"{min_len} samples are left out of evaluation: {shown}{more}",
                        stacklevel=3,
                    )
                self.short_eval += short
                return [i for i in ids if cache.entries[i].length >= min_len]

            self.short_eval = []
            all_test = held_out("test")
            # a bounded test set (e.g. a filter-mismatch grid): evenly spread, so every speaker
            keep = _evenly_spaced(len(all_test), self.test_max_files)
            self.test_indices = [all_test[k] for k in keep]
            if not self.test_indices:
                warnings.warn(
                    f"{self.corpus.root}: no held-out files to evaluate on (test_speakers="
                    f"{self.corpus.test_speakers!r}); validation and test will be empty",
                    stacklevel=2,
                )
            # validation never sees a test file: held-out utterances of the training speakers,
            # or the corpus's own validation group (piano), evenly spread if it is larger
            pool = held_out("val")
            self.val_indices = [pool[k] for k in _evenly_spaced(len(pool), self.val_max_files)]
            self.cache = cache
        if stage in (None, "fit") and self._train_set is None:
            if not self.train_indices:
                raise DataError(
                    f"{self.corpus.root}: no training files (test_speakers="
                    f"{self.corpus.test_speakers!r} holds out every speaker); "
                    "test_speakers='*' is for evaluation only"
                )
            self._train_set = PatchDataset(self.cache, self.train_indices, self.patch_len)

    def _loader(self, dataset: Dataset, **kwargs: Any) -> DataLoader:
        return DataLoader(
            dataset,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            **kwargs,
        )

    def train_dataloader(self) -> DataLoader:
        """`patches_per_epoch` random patches per epoch in all, split over the ranks.

        Batch k of epoch e on rank r is drawn from (seed, e, k, r); the loader's state (the
        batches done, from the trainer's progress) goes into checkpoints, so a resumed run
        continues the stream. The Trainer must not replace the sampler
        (`use_distributed_sampler: false`, set in conf/trainer/default.yaml).
        """
        if self._train_set is None:
            self.setup("fit")
        assert self._train_set is not None
        rank, world_size = distributed_rank()
        seed = torch.initial_seed() if self.seed is None else self.seed
        sampler = PatchBatchSampler(
            len(self._train_set), self.patches_per_epoch, self.batch_size, seed, rank, world_size,
            repeat_batches=self.overfit_batches,
        )
        batches_done = None
        if self.trainer is not None:
            # batches whose training step ran: exact at checkpoint time, prefetching or not
            progress = self.trainer.fit_loop.epoch_loop.batch_progress
            batches_done = lambda: progress.total.processed  # noqa: E731
        return ResumableLoader(
            self._train_set,
            batch_sampler=sampler,
            batches_done=batches_done,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
        )

    def _eval_loader(self, indices: list[int]) -> DataLoader:
        """Whole utterances; under DDP each rank gets its share, no file padded in twice."""
        if self.cache is None:
            self.setup("test")
        assert self.cache is not None
        dataset = UtteranceDataset(self.cache, indices, self.ratio)
        rank, world_size = distributed_rank()
        sampler = DistributedEvalSampler(len(dataset), rank, world_size)
        return self._loader(dataset, batch_size=1, sampler=sampler, collate_fn=collate_utterances)

    def split_files(self) -> dict[str, list[str]]:
        """{"train", "val", "test"}: the files of each split, relative to the corpus root."""
        if self.cache is None:
            self.setup("fit")
        assert self.cache is not None
        entries = self.cache.entries
        return {
            name: [entries[i].path for i in indices]
            for name, indices in (
                ("train", self.train_indices),
                ("val", self.val_indices),
                ("test", self.test_indices),
            )
        }

    def val_dataloader(self) -> DataLoader:
        """The validation split (never a test file), at most `val_max_files` utterances."""
        if self.cache is None:
            self.setup("validate")
        return self._eval_loader(self.val_indices)

    def test_dataloader(self) -> DataLoader:
        """Every held-out utterance (long enough to evaluate), or `test_max_files` of them."""
        if self.cache is None:
            self.setup("test")
        return self._eval_loader(self.test_indices)

    def describe(self) -> str:
        """Files and minutes per split, for logs."""
        if self.cache is None:
            return f"{self.corpus!r} (not set up)"
        entries = self.cache.entries

        def part(name: str, idx: list[int]) -> str:
            minutes = sum(entries[i].length for i in idx) / self.sample_rate / 60
            speakers = sorted({entries[i].speaker for i in idx})
            shown = ", ".join(speakers[:8]) + (", ..." if len(speakers) > 8 else "")
            return (
                f"{name}: {len(idx)} file{'s' * (len(idx) != 1)}, {minutes:.1f} min, "
                f"{len(speakers)} speaker{'s' * (len(speakers) != 1)} ({shown})"
            )

        lines = [
            f"{self.corpus.name} at {self.sample_rate} Hz, ratio {self.ratio} "
            f"(cache {self.cache.path})",
            "  " + part("train", self.train_indices),
            "  " + part("val", self.val_indices),
            "  " + part("test", self.test_indices),
        ]
        if self.short_eval:
            lines.append(f"  left out of evaluation (too short): {len(self.short_eval)} files")
        lines.append(
            f"  training: {self.patches_per_epoch} random patches of {self.patch_len} samples "
            f"per epoch, batch {self.batch_size}"
        )
        return "\n".join(lines)
