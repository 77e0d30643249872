"""Decode and resample every file of a corpus ONCE into a flat float32 file, memory-mapped.

`<cache_dir>/<corpus.name>-<sr>-<key12>/` holds `audio.f32` (all files' mono samples,
concatenated, raw little-endian float32) and `manifest.json` (offset and length of each file).
The key hashes the file list (relative path, size, mtime), the sample rate, `trim_silence` and
CACHE_VERSION: exactly what determines the decoded audio. The low-pass filter and the ratio are
NOT in it, because the low-res input is made on the fly from these samples, so changing them
never rebuilds anything.

The build streams one file at a time into a hidden sibling folder that is renamed into place
only when complete: memory does not grow with the corpus (the original kept every patch in RAM,
REFERENCE section 4), and a killed build never leaves a cache that looks valid.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from audio_superres.data.audio_io import read_audio, to_mono, trim_silence
from audio_superres.data.corpora import Corpus
from audio_superres.dsp.resample import resample_audio
from audio_superres.utils import atomic_write_json

__all__ = [
    "CACHE_VERSION",
    "CacheEntry",
    "CachedCorpus",
    "build_cache",
    "cache_key",
    "ordered_map",
]

CACHE_VERSION = 1
"""Bump when decoding, trimming or resampling changes, so that old caches are not reused."""

_AUDIO = "audio.f32"
_MANIFEST = "manifest.json"
_DTYPE = np.dtype("<f4")
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class CacheEntry:
    """One cached utterance: `audio[offset : offset + length]` of the cache file."""

    path: str  # relative to the corpus root, posix
    speaker: str
    offset: int
    length: int
    orig_sr: int


@dataclass
class CachedCorpus:
    """A built cache: the entries and their samples, memory-mapped read-only.

    Pickles without the samples (workers reopen the file), so DataLoader processes started
    with spawn do not copy the whole corpus.
    """

    root: Path  # the corpus root: root / entry.path is the source file
    path: Path  # this cache's folder
    entries: list[CacheEntry]
    sample_rate: int
    settings: dict[str, Any] = field(default_factory=dict)
    _audio: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def audio(self) -> np.ndarray:
        """All samples, a read-only memmap opened on first use."""
        if self._audio is None:
            total = sum(e.length for e in self.entries)
            file = self.path / _AUDIO
            if file.stat().st_size != total * _DTYPE.itemsize:
                raise ValueError(
                    f"{file}: holds {file.stat().st_size} bytes, the manifest expects "
                    f"{total * _DTYPE.itemsize}; delete {self.path} to rebuild the cache"
                )
            if total == 0:
                self._audio = np.zeros(0, dtype=_DTYPE)
            else:
                self._audio = np.memmap(file, dtype=_DTYPE, mode="r", shape=(total,))
        return self._audio

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, i: int) -> np.ndarray:
        """The i-th utterance (a read-only view into the memmap)."""
        e = self.entries[i]
        return self.audio[e.offset : e.offset + e.length]

    @property
    def duration_s(self) -> float:
        return sum(e.length for e in self.entries) / self.sample_rate

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_audio"] = None
        return state

    @classmethod
    def load(cls, path: str | os.PathLike, root: str | os.PathLike) -> CachedCorpus:
        """Open a finished cache folder."""
        path = Path(path)
        try:
            manifest = json.loads((path / _MANIFEST).read_text())
            entries = [CacheEntry(**e) for e in manifest["entries"]]
            sample_rate = int(manifest["sample_rate"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(
                f"{path / _MANIFEST}: unreadable cache manifest ({e}); delete {path} to rebuild"
            ) from e
        cached = cls(Path(root), path, entries, sample_rate, manifest.get("settings", {}))
        _ = cached.audio  # check the size now, not in a DataLoader worker
        return cached


def _file_list(corpus: Corpus) -> list[tuple[str, str, int, int]]:
    """(relative path, speaker, size, mtime_ns) of every file, sorted."""
    out = []
    for f in corpus.files():
        st = f.path.stat()
        out.append((corpus.relative(f.path), f.speaker, st.st_size, st.st_mtime_ns))
    return sorted(out)


def cache_key(files: Sequence[tuple[str, str, int, int]], sample_rate: int, trim: bool) -> str:
    """Hash of everything that determines the cached samples (and nothing else)."""
    payload = json.dumps(
        {
            "version": CACHE_VERSION,
            "sample_rate": int(sample_rate),
            "trim_silence": bool(trim),
            "files": [list(f) for f in files],
        },
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def _decode(job: tuple[str, int, bool]) -> tuple[np.ndarray, int]:
    """Read one file, mix to mono, optionally trim, resample: (samples, native rate)."""
    path, sample_rate, trim = job
    audio, sr = read_audio(path)
    x = to_mono(audio)
    if trim:
        x = trim_silence(x, sr)
    return resample_audio(x, sr, sample_rate), sr


def ordered_map(
    fn: Callable[[T], R], jobs: Sequence[T], num_workers: int, chunksize: int = 4
) -> Iterator[R]:
    """`map(fn, jobs)` in order, over a process pool when `num_workers` > 1.

    On Linux the pool forks, like torch's DataLoader: workers start at once and scripts need
    no `if __name__ == "__main__"` guard (with spawn, a script without one makes the pool
    restart crashing workers forever). The workers only run numpy/scipy/soundfile code, never
    torch or CUDA, so forking a process that has initialised those is safe. Elsewhere: spawn.
    """
    if num_workers <= 1 or len(jobs) < 2:
        yield from map(fn, jobs)
        return
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    with multiprocessing.get_context(method).Pool(min(num_workers, len(jobs))) as pool:
        yield from pool.imap(fn, jobs, chunksize=chunksize)


def remove_stale_builds(parent: Path, final_name: str) -> None:
    """Delete `.<final_name>.tmp-<pid>-*` folders left by killed builds (their pid is gone)."""
    for tmp in parent.glob(f".{final_name}.tmp-*"):
        try:
            pid = int(tmp.name.rsplit(".tmp-", 1)[1].split("-", 1)[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except (ValueError, IndexError, OSError):
            continue  # not ours, or a live build of another user


def make_build_dir(parent: Path, final_name: str) -> Path:
    """A fresh hidden folder beside `parent / final_name` to build into, then rename.

    Named after this process so later builds can clean it up if this one is killed, and
    made world-readable (mkdtemp makes 0700, which the rename would carry over).
    """
    parent.mkdir(parents=True, exist_ok=True)
    remove_stale_builds(parent, final_name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final_name}.tmp-{os.getpid()}-", dir=parent))
    os.chmod(tmp, 0o755)
    return tmp


def build_cache(
    corpus: Corpus, sample_rate: int, cache_dir: str | os.PathLike, num_workers: int = 2
) -> CachedCorpus:
    """Return the cache of `corpus` at `sample_rate`, building it first if needed."""
    cache_dir = Path(cache_dir)
    files = _file_list(corpus)
    trim = bool(getattr(corpus, "trim_silence", False))
    key = cache_key(files, sample_rate, trim)
    final = cache_dir / f"{corpus.name}-{int(sample_rate)}-{key[:12]}"
    if (final / _MANIFEST).is_file():
        return CachedCorpus.load(final, corpus.root)

    tmp = make_build_dir(cache_dir, final.name)
    try:
        entries = _write_audio(corpus, files, sample_rate, trim, tmp / _AUDIO, num_workers)
        settings = {
            "version": CACHE_VERSION,
            "corpus": corpus.name,
            "root": str(corpus.root),
            "trim_silence": trim,
            "key": key,
        }
        atomic_write_json(
            tmp / _MANIFEST,
            {
                "sample_rate": int(sample_rate),
                "settings": settings,
                "entries": [asdict(e) for e in entries],
            },
        )
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / _MANIFEST).is_file():  # not a concurrent build that won the race
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return CachedCorpus.load(final, corpus.root)


def _write_audio(
    corpus: Corpus,
    files: list[tuple[str, str, int, int]],
    sample_rate: int,
    trim: bool,
    out: Path,
    num_workers: int,
) -> list[CacheEntry]:
    """Stream every decoded file into `out`; return the entries (offsets in samples)."""
    jobs = [(str(corpus.root / rel), int(sample_rate), trim) for rel, *_ in files]
    entries: list[CacheEntry] = []
    offset, t0, last = 0, time.monotonic(), 0.0
    with open(out, "wb") as f:
        for (rel, speaker, *_), (x, orig_sr) in zip(
            files, ordered_map(_decode, jobs, num_workers), strict=True
        ):
            f.write(np.ascontiguousarray(x, dtype=_DTYPE).tobytes())
            entries.append(CacheEntry(rel, speaker, offset, len(x), int(orig_sr)))
            offset += len(x)
            now = time.monotonic()
            if now - last > 2.0 or len(entries) == len(files):
                last = now
                print(
                    f"[cache] {corpus.name} @ {sample_rate} Hz: {len(entries)}/{len(files)} files, "
                    f"{offset / sample_rate / 60:.1f} min, {now - t0:.0f} s",
                    file=sys.stderr,
                )
        f.flush()
        os.fsync(f.fileno())
    return entries
