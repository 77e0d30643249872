"""The decode-once cache: contents, reuse, key, atomic builds, errors."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

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
    assert sorted(p.name for p in cached.path.iterdir()) == [
        "audio.f32",
        "manifest.json",
        "report.json",
    ]
    report = json.loads((cached.path / "report.json").read_text())
    assert report["files"] == report["prepared"] == 9 and report["skipped"] == []
    assert report["hours"] == pytest.approx(cached.duration_s / 3600, abs=1e-4)


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


def finished(cache_dir: Path) -> list[str]:
    """Finished caches only (hidden names are partial builds)."""
    return [n for n in cache_dirs(cache_dir) if not n.startswith(".")]


def test_a_crash_mid_build_leaves_no_cache_and_resumes(
    folder_corpus: Path, tmp_path: Path, monkeypatch
):
    real_decode = cache_mod._decode
    calls = []

    def crash_on_fifth(job):
        calls.append(job[0])
        if len(calls) == 5:
            raise KeyboardInterrupt("killed")
        return real_decode(job)

    monkeypatch.setattr(cache_mod, "_decode", crash_on_fifth)
    with pytest.raises(KeyboardInterrupt):
        build_cache(FolderCorpus(folder_corpus), 16000, tmp_path / "cache", num_workers=1)
    assert finished(tmp_path / "cache") == []  # nothing that looks like a cache
    (partial,) = (tmp_path / "cache").glob(".*.partial")
    assert len((partial / "entries.jsonl").read_text().splitlines()) == 4

    calls.clear()
    monkeypatch.setattr(cache_mod, "_decode", lambda job: calls.append(job[0]) or real_decode(job))
    cached = build_cache(FolderCorpus(folder_corpus), 16000, tmp_path / "cache", num_workers=1)
    assert len(calls) == 5  # only the files after the crash were decoded again
    assert len(cached) == 9 and cache_dirs(tmp_path / "cache") == [cached.path.name]
    assert json.loads((cached.path / "report.json").read_text())["resumed_after_files"] == 4
    fresh = build_cache(FolderCorpus(folder_corpus), 16000, tmp_path / "fresh", num_workers=1)
    assert fresh.entries == cached.entries
    np.testing.assert_array_equal(fresh.audio, cached.audio)


def test_torn_log_and_unlogged_samples_are_cut_off(
    folder_corpus: Path, tmp_path: Path, monkeypatch
) -> None:
    corpus = FolderCorpus(folder_corpus)
    reference = build_cache(corpus, 16000, tmp_path / "ref", num_workers=1)
    real_decode = cache_mod._decode

    def crash_on_seventh(job):
        if job[0].endswith("c1.wav"):
            raise KeyboardInterrupt("killed")
        return real_decode(job)

    monkeypatch.setattr(cache_mod, "_decode", crash_on_seventh)
    with pytest.raises(KeyboardInterrupt):
        build_cache(corpus, 16000, tmp_path / "cache", num_workers=1)
    (partial,) = (tmp_path / "cache").glob(".*.partial")
    log = partial / "entries.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    assert len(lines) == 6
    # a kill in mid-write: half a record in the log, samples of an unlogged file in the audio
    log.write_text("".join(lines[:5]) + lines[5][:20])
    with open(partial / "audio.f32", "ab") as f:
        f.write(b"\x00" * 1000)
    monkeypatch.setattr(cache_mod, "_decode", real_decode)
    cached = build_cache(corpus, 16000, tmp_path / "cache", num_workers=1)
    assert cached.entries == reference.entries
    np.testing.assert_array_equal(cached.audio, reference.audio)


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
    assert finished(tmp_path / "cache") == []
    bad.unlink()  # fixed: the stale partial build of the old file list is cleaned up
    cached = build_cache(FolderCorpus(folder_corpus), 16000, tmp_path / "cache", num_workers=1)
    assert cache_dirs(tmp_path / "cache") == [cached.path.name]


@pytest.mark.parametrize("workers", [1, 2])
def test_skip_lists_bad_files_in_the_report(folder_corpus: Path, tmp_path: Path, workers: int):
    bad = folder_corpus / "bob" / "broken.wav"
    atomic_write_bytes(bad, b"RIFF\x00\x00garbage")
    corpus = FolderCorpus(folder_corpus)
    with pytest.warns(UserWarning, match=r"1 unreadable file\(s\) skipped .*broken.wav"):
        cached = build_cache(corpus, 16000, tmp_path / "c", num_workers=workers, on_bad_file="skip")
    assert len(cached) == 9 and "bob/broken.wav" not in [e.path for e in cached.entries]
    report = json.loads((cached.path / "report.json").read_text())
    assert report["files"] == 10 and report["prepared"] == 9
    (skipped,) = report["skipped"]
    assert skipped["path"] == "bob/broken.wav"
    assert skipped["reason"].startswith(f"{bad}: cannot decode audio")
    strict = FolderCorpus(folder_corpus)
    strict.on_bad_file = "error"  # the corpus attribute is the default policy
    with pytest.raises(AudioFileError, match="broken.wav"):
        build_cache(strict, 16000, tmp_path / "c", num_workers=workers)
    with pytest.raises(ValueError, match="on_bad_file must be one of"):
        build_cache(corpus, 16000, tmp_path / "c", on_bad_file="ignore")


def test_48_khz_target_and_all_cores(folder_corpus: Path, tmp_path: Path) -> None:
    cached = build_cache(FolderCorpus(folder_corpus), 48000, tmp_path / "cache", num_workers=-1)
    assert cached.sample_rate == 48000 and cached.path.name.startswith("corpus-48000-")
    a1 = next(e for e in cached.entries if e.path == "alice/a1.wav")
    assert a1.orig_sr == 16000 and a1.length == 3 * 24000  # 1.5 s at 48 kHz
    assert cache_mod.resolve_workers(-1) >= 1 and cache_mod.resolve_workers(0) == 1


def test_ordered_map_keeps_order_with_a_bounded_window() -> None:
    jobs = list(range(50))
    assert list(cache_mod.ordered_map(abs, jobs, 2, chunksize=3)) == jobs
    assert list(cache_mod.ordered_map(abs, [], 2)) == []


MEMORY_PROBE = """
import json, resource, sys, tracemalloc
from audio_superres.data.cache import build_cache
from audio_superres.data.corpora import FolderCorpus
corpus = FolderCorpus(sys.argv[1])
if sys.argv[3] == "traced":
    tracemalloc.start()  # Python heap incl. numpy buffers, of the build only
build_cache(corpus, 16000, sys.argv[2], num_workers=1, progress=False)
if sys.argv[3] == "traced":
    print(json.dumps(tracemalloc.get_traced_memory()[1]))
else:
    print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
"""


def test_peak_memory_does_not_grow_with_the_number_of_files(tmp_path: Path, tones) -> None:
    """10x more files: < 20% more peak memory (heap of the build, and the process's RSS)."""
    x = tones(2.0, 48000)
    peaks: dict[str, list[int]] = {"traced": [], "rss": []}
    for n in (10, 100):
        root = tmp_path / f"c{n}"
        for i in range(n):
            path = root / f"spk{i % 5}" / f"u{i:03d}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, x, 48000, subtype="FLOAT")
        for mode in peaks:
            out = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    MEMORY_PROBE,
                    str(root),
                    str(tmp_path / mode / str(n)),
                    mode,
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            peaks[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
    for mode, (small, large) in peaks.items():
        assert large <= 1.2 * small, (mode, peaks)


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


def test_pool_workers_die_on_sigterm_when_the_parent_ignores_it() -> None:
    """submitit's jobs catch SIGTERM (and log it) and forked pool workers inherit that handler:
    the pool's exit terminates its workers with SIGTERM, and a worker that caught it instead
    hung a `hydra/launcher=local` evaluation. Workers must have the default action."""
    script = (
        "import signal\n"
        "from audio_superres.data.cache import ordered_map\n"
        "def default_sigterm(_):\n"
        "    return signal.getsignal(signal.SIGTERM) is signal.SIG_DFL\n"
        "signal.signal(signal.SIGTERM, lambda *_: None)\n"
        "print(all(ordered_map(default_sigterm, list(range(8)), 2, chunksize=1)))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-1] == "True", proc.stdout
