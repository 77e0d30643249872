"""The decode-once cache: contents, reuse, key, atomic builds, errors."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

import audio_superres.data.cache as cache_mod
from audio_superres.data import FolderCorpus, SuperResDataModule
from audio_superres.data.audio_io import AudioFileError, read_audio, to_mono
from audio_superres.data.cache import CachedCorpus, build_cache
from audio_superres.dsp.resample import resample_audio
from audio_superres.utils import atomic_write_bytes


def cache_dirs(cache_dir: Path) -> list[str]:
    return sorted(p.name for p in cache_dir.iterdir()) if cache_dir.exists() else []


def test_cached_audio_is_the_resampled_mono_file(folder_corpus: Path, tmp_path: Path) -> None:
    corpus = FolderCorpus(folder_corpus)
    cached = build_cache(corpus, 16000, tmp_path / "cache", num_workers=1)
    assert isinstance(cached, CachedCorpus) and len(cached) == 9 and cached.sample_rate == 16000
    assert isinstance(cached.audio, np.memmap) and not cached.audio.flags.writeable
    expected_offset = 0
    for i, (entry, f) in enumerate(zip(cached.entries, corpus.files(), strict=True)):
        assert entry.path == corpus.relative(f.path) and entry.speaker == f.speaker
        audio, sr = read_audio(f.path)
        assert entry.orig_sr == sr and entry.offset == expected_offset
        np.testing.assert_array_equal(cached.get(i), resample_audio(to_mono(audio), sr, 16000))
        expected_offset += entry.length
    assert cache_dirs(tmp_path / "cache") == [cached.path.name]
    assert cached.path.name.startswith("corpus-16000-")
    assert sorted(p.name for p in cached.path.iterdir()) == ["audio.f32", "manifest.json"]


def test_second_build_reuses_the_cache(folder_corpus: Path, tmp_path: Path, monkeypatch) -> None:
    first = build_cache(FolderCorpus(folder_corpus), 16000, tmp_path / "cache", num_workers=1)
    mtime = (first.path / "audio.f32").stat().st_mtime_ns

    def no_decoding(job):
        raise AssertionError(f"decoded {job[0]} again")

    monkeypatch.setattr(cache_mod, "_decode", no_decoding)
    second = build_cache(FolderCorpus(folder_corpus), 16000, tmp_path / "cache", num_workers=1)
    assert second.path == first.path and second.entries == first.entries
    assert (second.path / "audio.f32").stat().st_mtime_ns == mtime


def test_key_depends_on_rate_trim_and_files_not_on_ratio(
    folder_corpus: Path, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "cache"

    def prepared(**kw) -> Path:
        args = dict(
            corpus=FolderCorpus,
            root=str(folder_corpus),
            test_speakers=["carol"],
            sample_rate=8000,
            ratio=2,
            cache_dir=str(cache_dir),
            prepare_workers=1,
        )
        args.update(kw)
        dm = SuperResDataModule(**args)
        dm.prepare_data()
        dm.setup("test")
        return dm.cache.path

    base = prepared()
    assert prepared(ratio=4, patch_len=512, batch_size=2) == base
    assert prepared(sample_rate=4000) != base
    trimmed = FolderCorpus(folder_corpus, trim_silence=True)
    assert build_cache(trimmed, 8000, cache_dir, num_workers=1).path != base
    wav = folder_corpus / "carol" / "c3.wav"
    os.utime(wav, ns=(wav.stat().st_atime_ns, wav.stat().st_mtime_ns + 10**9))
    assert prepared().name != base.name
    assert len(cache_dirs(cache_dir)) == 4


def test_a_crash_mid_build_leaves_no_cache(folder_corpus: Path, tmp_path: Path, monkeypatch):
    real_decode = cache_mod._decode
    calls = []

    def crash_on_second(job):
        calls.append(job)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return real_decode(job)

    monkeypatch.setattr(cache_mod, "_decode", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        build_cache(FolderCorpus(folder_corpus), 16000, tmp_path / "cache", num_workers=1)
    assert cache_dirs(tmp_path / "cache") == []  # neither a final nor a temporary folder

    monkeypatch.setattr(cache_mod, "_decode", real_decode)
    cached = build_cache(FolderCorpus(folder_corpus), 16000, tmp_path / "cache", num_workers=1)
    assert len(cached) == 9 and cache_dirs(tmp_path / "cache") == [cached.path.name]


def test_leftovers_of_killed_builds_are_removed(folder_corpus: Path, tmp_path: Path) -> None:
    corpus = FolderCorpus(folder_corpus)
    cached = build_cache(corpus, 16000, tmp_path / "cache", num_workers=1)
    stale = tmp_path / "cache" / f".{cached.path.name}.tmp-999999999-abc"
    stale.mkdir()
    os.rename(cached.path, tmp_path / "moved")
    rebuilt = build_cache(corpus, 16000, tmp_path / "cache", num_workers=1)
    assert not stale.exists() and rebuilt.path == cached.path


def test_parallel_build_matches_serial(folder_corpus: Path, tmp_path: Path) -> None:
    corpus = FolderCorpus(folder_corpus)
    serial = build_cache(corpus, 16000, tmp_path / "a", num_workers=1)
    parallel = build_cache(corpus, 16000, tmp_path / "b", num_workers=2)
    assert parallel.entries == serial.entries
    np.testing.assert_array_equal(parallel.audio, serial.audio)


def test_corrupt_file_is_named_and_nothing_is_cached(folder_corpus: Path, tmp_path: Path):
    bad = folder_corpus / "bob" / "broken.wav"
    atomic_write_bytes(bad, b"RIFF\x00\x00garbage")
    with pytest.raises(AudioFileError, match=f"{bad}: cannot decode"):
        build_cache(FolderCorpus(folder_corpus), 16000, tmp_path / "cache", num_workers=1)
    assert cache_dirs(tmp_path / "cache") == []


def test_pickling_drops_the_samples(folder_corpus: Path, tmp_path: Path) -> None:
    cached = build_cache(FolderCorpus(folder_corpus), 16000, tmp_path / "cache", num_workers=1)
    blob = pickle.dumps(cached)
    assert len(blob) < cached.audio.nbytes / 10
    np.testing.assert_array_equal(pickle.loads(blob).get(3), cached.get(3))


def test_truncated_cache_is_reported(folder_corpus: Path, tmp_path: Path) -> None:
    cached = build_cache(FolderCorpus(folder_corpus), 16000, tmp_path / "cache", num_workers=1)
    with open(cached.path / "audio.f32", "r+b") as f:
        f.truncate(100)
    with pytest.raises(ValueError, match="audio.f32: holds 100 bytes"):
        CachedCorpus.load(cached.path, folder_corpus)
