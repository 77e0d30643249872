"""SuperResDataModule: training patches, evaluation utterances, splits and reproducibility."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from audio_superres.data import FolderCorpus, SuperResDataModule
from audio_superres.data.audio_io import write_audio


def make_dm(root: Path, tmp_path: Path, **kw) -> SuperResDataModule:
    args = dict(
        corpus=FolderCorpus,
        root=str(root),
        test_speakers=["carol"],
        sample_rate=16000,
        ratio=4,
        patch_len=4097,
        batch_size=4,
        patches_per_epoch=16,
        cache_dir=str(tmp_path / "cache"),
        prepare_workers=1,
    )
    args.update(kw)
    dm = SuperResDataModule(**args)
    dm.prepare_data()
    return dm


def train_batches(dm: SuperResDataModule, seed: int) -> list[torch.Tensor]:
    L.seed_everything(seed, verbose=False)
    return list(dm.train_dataloader())


def test_training_batches_are_hr_patches(folder_corpus: Path, tmp_path: Path) -> None:
    dm = make_dm(folder_corpus, tmp_path)
    dm.setup("fit")
    assert dm.patch_len == 4096  # cropped to a multiple of the ratio
    batches = train_batches(dm, 0)
    assert len(batches) == 16 // 4
    for b in batches:
        assert b.shape == (4, 4096) and b.dtype == torch.float32
    ds = dm._train_set
    assert {dm.cache.entries[i].speaker for i in ds.utterances} == {"alice", "bob"}
    first = dm.cache.entries[ds.utterances[0]]
    np.testing.assert_array_equal(ds[0].numpy(), dm.cache.get(ds.utterances[0])[:4096])
    last = dm.cache.get(ds.utterances[-1])
    np.testing.assert_array_equal(ds[len(ds) - 1].numpy(), last[-4096:])
    assert len(ds) == sum(dm.cache.entries[i].length - 4095 for i in ds.utterances)
    assert first.speaker != "carol"


def test_sampling_is_reproducible_with_the_seed(folder_corpus: Path, tmp_path: Path) -> None:
    dm = make_dm(folder_corpus, tmp_path)
    dm.setup("fit")
    a, b, c = train_batches(dm, 7), train_batches(dm, 7), train_batches(dm, 8)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))
    workers = make_dm(folder_corpus, tmp_path, num_workers=1)
    workers.setup("fit")
    assert all(torch.equal(x, y) for x, y in zip(a, train_batches(workers, 7), strict=True))


def test_eval_items_are_whole_held_out_utterances(folder_corpus: Path, tmp_path: Path) -> None:
    dm = make_dm(folder_corpus, tmp_path, test_speakers=["bob", "carol"], val_max_files=3)
    dm.setup("fit")
    test = list(dm.test_dataloader())
    assert [b["name"][0] for b in test] == [
        "bob/b1.wav",
        "bob/b3.WAV",
        "bob/session/b2.wav",
        "carol/c1.wav",
        "carol/c2.wav",
        "carol/c3.wav",
    ]
    for b in test:
        entry = next(e for e in dm.cache.entries if e.path == b["name"][0])
        assert (
            b["hr"].shape == (1, entry.length - entry.length % 4) and b["hr"].dtype == torch.float32
        )
        assert b["speaker"] == [entry.speaker]
    # validation: an utterance of the training speaker, never a test file
    val = [b["name"][0] for b in dm.val_dataloader()]
    assert val == ["alice/a1.wav"]
    assert {dm.cache.entries[i].speaker for i in dm.train_indices} == {"alice"}
    assert "train: 2 files" in dm.describe() and "test: 6 files" in dm.describe()


def test_star_is_for_evaluation_only(folder_corpus: Path, tmp_path: Path) -> None:
    dm = make_dm(folder_corpus, tmp_path, test_speakers="*", val_max_files=None)
    dm.setup("test")
    assert len(dm.test_dataloader()) == 9 and len(dm.val_dataloader()) == 0
    with pytest.raises(ValueError, match="evaluation only"):
        dm.setup("fit")


def test_unknown_speaker_and_too_long_patches_are_clear_errors(
    folder_corpus: Path, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=r"\['zoe'\] not found; speakers found"):
        make_dm(folder_corpus, tmp_path, test_speakers=["zoe"]).setup("fit")
    with pytest.raises(ValueError, match="patch_len=160000 samples long"):
        make_dm(folder_corpus, tmp_path, patch_len=160_000).setup("fit")


def test_short_utterances_are_left_out_of_evaluation(
    folder_corpus: Path, tmp_path: Path, tones
) -> None:
    write_audio(folder_corpus / "carol" / "tiny.wav", tones(0.01, 16000), 16000)
    dm = make_dm(folder_corpus, tmp_path)
    with pytest.warns(UserWarning, match="carol/tiny.wav"):
        dm.setup("fit")
    assert "carol/tiny.wav" not in [b["name"][0] for b in dm.test_dataloader()]


def test_default_root_comes_from_the_corpus(folder_corpus: Path, tmp_path: Path) -> None:
    dm = SuperResDataModule(
        corpus=partial(FolderCorpus, folder_corpus),
        root=None,
        test_speakers=["bob"],
        sample_rate=16000,
        ratio=2,
        cache_dir=str(tmp_path / "cache"),
        prepare_workers=1,
    )
    dm.prepare_data()
    dm.setup("fit")
    assert dm.corpus.root == folder_corpus and len(dm.test_indices) == 3
