"""Decode and resample every file of a corpus ONCE into a flat float32 file, memory-mapped.

`<cache_dir>/<corpus.name>-<sr>-<key12>/` holds `audio.f32` (all files' mono samples,
concatenated, raw little-endian float32), `manifest.json` (offset and length of each file) and
`report.json` (files, hours, skipped files and why, build time). The key hashes the file list
(relative path, size, mtime), the sample rate, `trim_silence` (and `on_bad_file` when it is
"skip") and CACHE_VERSION: exactly what determines the cached samples. The low-pass filter and
the ratio are NOT in it, because the low-res input is made on the fly from these samples, so
changing them never rebuilds anything.

The build streams one file at a time (decoded by a bounded pool of worker processes) into a
hidden sibling folder, `.<name>.partial/`, that is renamed into place only when complete:
memory does not grow with the corpus (the original kept every patch in RAM, REFERENCE section
4), and a killed build never leaves a cache that looks valid. The folder keeps an append-only
log of the files already written, committed only after their samples are on disk, so an
interrupted build resumes where it stopped; a torn last record or unlogged samples are cut off,
never used. A lock in that folder makes concurrent builds of the same cache wait for each other.

Preparing a folder corpus from the command line, with its throughput and peak memory:
`python -m audio_superres.bench cache --corpus-root ROOT [--sample-rate 16000]`.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, NoReturn, TypeVar

import numpy as np

from audio_superres.data.audio_io import AudioFileError, read_audio, to_mono, trim_silence
from audio_superres.data.corpora import Corpus
from audio_superres.dsp.resample import resample_audio
from audio_superres.errors import ConfigError, DataError
from audio_superres.utils import atomic_write_json, atomic_write_text, output_error

__all__ = [
    "BAD_FILE_POLICIES",
    "CACHE_VERSION",
    "CacheEntry",
    "CachedCorpus",
    "build_cache",
    "cache_key",
    "ordered_map",
    "resolve_workers",
]

CACHE_VERSION = 1
"""Bump when decoding, trimming or resampling changes, so that old caches are not reused."""

BAD_FILE_POLICIES = ("error", "skip")
"""`on_bad_file`: stop at the first unreadable file (naming it), or skip it and list it in
`report.json` (and a warning); a skipped file is never silently dropped."""

_AUDIO = "audio.f32"
_MANIFEST = "manifest.json"
_REPORT = "report.json"
_LOG = "entries.jsonl"
_LOCK = "lock"
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
                raise DataError(
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
            raise DataError(
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


def cache_key(
    files: Sequence[tuple[str, str, int, int]],
    sample_rate: int,
    trim: bool,
    on_bad_file: str = "error",
) -> str:
    """Hash of everything that determines the cached samples (and nothing else).

    `on_bad_file="skip"` is part of it (such a cache may lack files); "error" is not, so the
    keys of caches built before the option existed are unchanged.
    """
    content: dict[str, Any] = {
        "version": CACHE_VERSION,
        "sample_rate": int(sample_rate),
        "trim_silence": bool(trim),
        "files": [list(f) for f in files],
    }
    if on_bad_file != "error":
        content["on_bad_file"] = on_bad_file
    payload = json.dumps(content, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def _decode(job: tuple[str, int, bool]) -> tuple[np.ndarray, int]:
    """Read one file, mix to mono, optionally trim, resample: (samples, native rate)."""
    path, sample_rate, trim = job
    audio, sr = read_audio(path)
    x = to_mono(audio)
    if trim:
        x = trim_silence(x, sr)
    return resample_audio(x, sr, sample_rate), sr


_SKIPPABLE = (AudioFileError, ValueError, OSError, RuntimeError)


def _decode_job(job: tuple[str, int, bool, bool]) -> tuple[np.ndarray | None, int, str | None]:
    """`_decode` for the cache: (samples, native rate, None), or (None, 0, reason) if skipping.

    Errors name the file (read_audio's do already; others get the path prefixed).
    """
    path, sample_rate, trim, skip = job
    if not skip:
        x, sr = _decode((path, sample_rate, trim))
        return x, sr, None
    try:
        x, sr = _decode((path, sample_rate, trim))
    except _SKIPPABLE as e:
        reason = str(e)
        return None, 0, reason if reason.startswith(path) else f"{path}: {reason}"
    return x, sr, None


def _map_chunk(fn: Callable[[T], R], chunk: Sequence[T]) -> list[R]:
    return [fn(job) for job in chunk]


def _default_sigterm() -> None:
    """Pool workers die on SIGTERM, as `Pool.terminate` expects. A forked worker inherits its
    parent's handler: under submitit (SLURM, `hydra/launcher=local`) that handler ignores
    SIGTERM, and the pool's exit then waited forever for workers that would not stop."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def resolve_workers(num_workers: int) -> int:
    """`num_workers` < 0 means every core this process may use; 0 and 1 mean no pool."""
    num_workers = int(num_workers)
    if num_workers >= 0:
        return max(1, num_workers)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def ordered_map(
    fn: Callable[[T], R], jobs: Sequence[T], num_workers: int, chunksize: int = 4
) -> Iterator[R]:
    """`map(fn, jobs)` in order, over a process pool when `num_workers` > 1 (< 0: all cores).

    At most `2 * workers` chunks are in flight, so results never pile up in memory when the
    consumer is slower than the workers (memory stays flat however many jobs there are).
    On Linux the pool forks, like torch's DataLoader: workers start at once and scripts need
    no `if __name__ == "__main__"` guard (with spawn, a script without one makes the pool
    restart crashing workers forever). The workers only run numpy/scipy/soundfile code, never
    torch or CUDA, so forking a process that has initialised those is safe. Elsewhere: spawn.
    """
    workers = min(resolve_workers(num_workers), len(jobs))
    if workers <= 1:
        yield from map(fn, jobs)
        return
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    chunks = (jobs[i : i + chunksize] for i in range(0, len(jobs), max(1, chunksize)))
    with multiprocessing.get_context(method).Pool(workers, initializer=_default_sigterm) as pool:
        pending: deque[Any] = deque()
        for chunk in chunks:
            pending.append(pool.apply_async(_map_chunk, (fn, chunk)))
            if len(pending) >= 2 * workers:
                yield from pending.popleft().get()
        while pending:
            yield from pending.popleft().get()


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


def _lock(folder: Path, blocking: bool = True) -> IO[str] | None:
    """An exclusive flock on `folder/lock` (created with the folder); None if busy."""
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / _LOCK, "a")  # noqa: SIM115 (held until _unlock)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        handle.close()
        return None
    return handle


def _unlock(handle: IO[str]) -> None:
    fcntl.flock(handle, fcntl.LOCK_UN)
    handle.close()


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def _remove_superseded(cache_dir: Path, prefix: str, keep: Path) -> None:
    """Delete idle partial builds of the same corpus and rate whose file list has changed.

    Their key differs (files were added, changed or removed; or trim_silence changed), so they
    can never be resumed; a partial build another process is working on is left alone.
    """
    for other in cache_dir.glob(f".{prefix}*.partial"):
        key = other.name[len(prefix) + 1 : -len(".partial")]
        if other == keep or not other.is_dir() or len(key) != 12 or not _is_hex(key):
            continue
        handle = _lock(other, blocking=False)
        if handle is not None:
            shutil.rmtree(other, ignore_errors=True)
            _unlock(handle)


def _load_if_built(final: Path, corpus: Corpus) -> CachedCorpus | None:
    return CachedCorpus.load(final, corpus.root) if (final / _MANIFEST).is_file() else None


def build_cache(
    corpus: Corpus,
    sample_rate: int,
    cache_dir: str | os.PathLike,
    num_workers: int = 2,
    on_bad_file: str | None = None,
    progress: bool = True,
) -> CachedCorpus:
    """Return the cache of `corpus` at `sample_rate`, building (or resuming) it if needed.

    `num_workers` decoding processes (< 0: every core). `on_bad_file` ("error" or "skip";
    default: the corpus' `on_bad_file` attribute, else "error") decides what an unreadable
    file does. Any rate works (16 kHz and 48 kHz are the usual ones): files are resampled
    from their own rate.
    """
    if int(sample_rate) <= 0:
        raise ConfigError(f"sample_rate must be positive, got {sample_rate}")
    policy = on_bad_file or getattr(corpus, "on_bad_file", None) or "error"
    if policy not in BAD_FILE_POLICIES:
        raise ConfigError(f"on_bad_file must be one of {BAD_FILE_POLICIES}, got {policy!r}")
    cache_dir = Path(cache_dir)
    files = _file_list(corpus)
    trim = bool(getattr(corpus, "trim_silence", False))
    key = cache_key(files, sample_rate, trim, policy)
    prefix = f"{corpus.name}-{int(sample_rate)}-"
    final = cache_dir / f"{prefix}{key[:12]}"
    if (built := _load_if_built(final, corpus)) is not None:
        return built

    partial = cache_dir / f".{final.name}.partial"
    try:
        handle = _lock(partial)  # waits while another process builds this same cache
    except OSError as exc:
        _raise_output_error(cache_dir, exc)
    assert handle is not None
    try:
        if (built := _load_if_built(final, corpus)) is not None:
            shutil.rmtree(partial, ignore_errors=True)  # made empty by our lock; theirs is gone
            return built
        remove_stale_builds(cache_dir, final.name)
        _remove_superseded(cache_dir, prefix, partial)
        os.chmod(partial, 0o755)
        t0 = time.monotonic()
        try:
            entries, skipped, resumed = _write_audio(
                corpus, files, sample_rate, trim, partial, num_workers, policy == "skip", progress
            )
        except OSError as exc:  # reading errors are AudioFileErrors: this is the cache's disk
            _raise_output_error(partial, exc)
        hours = sum(e.length for e in entries) / sample_rate / 3600
        # recorded below the corpus rate: resampled up, so their top band is empty
        upsampled = [
            {"path": e.path, "orig_sr": e.orig_sr} for e in entries if e.orig_sr < sample_rate
        ]
        settings = {
            "version": CACHE_VERSION,
            "corpus": corpus.name,
            "root": str(corpus.root),
            "trim_silence": trim,
            "on_bad_file": policy,
            "key": key,
        }
        atomic_write_json(
            partial / _REPORT,
            {
                "corpus": corpus.name,
                "sample_rate": int(sample_rate),
                "files": len(files),
                "prepared": len(entries),
                "skipped": skipped,
                "below_sample_rate": upsampled,
                "hours": round(hours, 4),
                "resumed_after_files": resumed,
                "seconds": round(time.monotonic() - t0, 2),
                "workers": resolve_workers(num_workers),
            },
        )
        atomic_write_json(
            partial / _MANIFEST,
            {
                "sample_rate": int(sample_rate),
                "settings": settings,
                "entries": [asdict(e) for e in entries],
            },
        )
        (partial / _LOG).unlink()
        # The lock file moves with the folder: a process that opened it before the rename
        # waits for our unlock, then finds the finished cache.
        os.rename(partial, final)
    finally:
        _unlock(handle)
    (final / _LOCK).unlink(missing_ok=True)
    if upsampled:
        shown = ", ".join(f"{u['path']} ({u['orig_sr']} Hz)" for u in upsampled[:3])
        warnings.warn(
            f"{corpus.root}: {len(upsampled)} file(s) recorded below {sample_rate} Hz were "
            f"resampled up and hold nothing above half their own rate (listed in "
            f"{final / _REPORT}): {shown}{' ...' if len(upsampled) > 3 else ''}",
            stacklevel=2,
        )
    if skipped:
        shown = "; ".join(s["reason"] for s in skipped[:3])
        warnings.warn(
            f"{corpus.root}: {len(skipped)} unreadable file(s) skipped (on_bad_file=skip), "
            f"listed in {final / _REPORT}: {shown}{' ...' if len(skipped) > 3 else ''}",
            stacklevel=2,
        )
    return CachedCorpus.load(final, corpus.root)


def _raise_output_error(path: Path, exc: OSError) -> NoReturn:
    """Disk full or read-only while building: one line naming the folder (what was written
    so far stays, and the next run resumes from it)."""
    err = output_error(path, exc)
    if err is exc:
        raise exc
    raise err from exc


def _read_log(
    log: Path, audio: Path, files: Sequence[tuple[str, str, int, int]]
) -> list[dict[str, Any]]:
    """The records of an interrupted build that are whole, in order and backed by samples.

    Stops at the first torn line, out-of-order record or record whose samples are not all in
    `audio`; what follows is rebuilt.
    """
    if not log.is_file():
        return []
    have = audio.stat().st_size // _DTYPE.itemsize if audio.is_file() else 0
    records: list[dict[str, Any]] = []
    total = 0
    with open(log, encoding="utf-8") as f:
        for i, line in enumerate(f):
            try:
                r = json.loads(line)
                ok = (
                    line.endswith("\n")
                    and r["i"] == i
                    and i < len(files)
                    and r["path"] == files[i][0]
                    and ("skipped" in r or (int(r["length"]) >= 0 and int(r["orig_sr"]) > 0))
                )
            except (ValueError, KeyError, TypeError):
                ok = False
            if not ok or total + int(r.get("length", 0)) > have:
                break
            total += int(r.get("length", 0))
            records.append(r)
    return records


def _write_audio(
    corpus: Corpus,
    files: list[tuple[str, str, int, int]],
    sample_rate: int,
    trim: bool,
    folder: Path,
    num_workers: int,
    skip_bad: bool,
    progress: bool,
) -> tuple[list[CacheEntry], list[dict[str, str]], int]:
    """Stream every decoded file into `folder/audio.f32`, resuming `folder/entries.jsonl`.

    Returns the entries (offsets in samples), the skipped files and how many files an earlier
    interrupted build had already done. Samples are fsynced before the records that point to
    them are appended to the log, so the log never describes samples that are not on disk.
    """
    audio_path, log_path = folder / _AUDIO, folder / _LOG
    done = _read_log(log_path, audio_path, files)
    entries: list[CacheEntry] = []
    skipped: list[dict[str, str]] = []
    offset = 0
    for r in done:
        if "skipped" in r:
            skipped.append({"path": r["path"], "reason": r["skipped"]})
        else:
            entries.append(
                CacheEntry(r["path"], files[r["i"]][1], offset, r["length"], r["orig_sr"])
            )
            offset += int(r["length"])
    # Cut unlogged samples and torn records: the build continues from the last whole record.
    with open(audio_path, "ab") as f:
        f.truncate(offset * _DTYPE.itemsize)
    atomic_write_text(log_path, "".join(json.dumps(r) + "\n" for r in done))
    start = len(done)
    meter = _Progress(corpus.name, sample_rate, len(files), start, offset, progress)
    if start:
        meter.note(f"resuming: {start} of {len(files)} files were already prepared")
    jobs = [(str(corpus.root / rel), int(sample_rate), trim, skip_bad) for rel, *_ in files[start:]]
    pending: list[str] = []
    last_commit = time.monotonic()
    with open(audio_path, "ab") as audio, open(log_path, "a", encoding="utf-8") as log:

        def commit() -> None:
            audio.flush()
            os.fsync(audio.fileno())
            log.write("".join(pending))
            log.flush()
            os.fsync(log.fileno())
            pending.clear()

        try:
            results = ordered_map(_decode_job, jobs, num_workers)
            for i, (rel, speaker, *_), (x, orig_sr, reason) in zip(
                range(start, len(files)), files[start:], results, strict=True
            ):
                if x is None:
                    skipped.append({"path": rel, "reason": str(reason)})
                    pending.append(json.dumps({"i": i, "path": rel, "skipped": reason}) + "\n")
                else:
                    audio.write(np.ascontiguousarray(x, dtype=_DTYPE).tobytes())
                    entries.append(CacheEntry(rel, speaker, offset, len(x), int(orig_sr)))
                    offset += len(x)
                    record = {"i": i, "path": rel, "length": len(x), "orig_sr": int(orig_sr)}
                    pending.append(json.dumps(record) + "\n")
                meter.update(i + 1, offset)
                if len(pending) >= 256 or time.monotonic() - last_commit > 1.0:
                    commit()
                    last_commit = time.monotonic()
        finally:
            commit()  # what was written stays usable for the next run, even on an error
        meter.close()
    return entries, skipped, start


class _Progress:
    """Files and hours of audio done: a tqdm bar on a terminal, a line every 10 s in logs."""

    def __init__(
        self, name: str, sample_rate: int, total: int, done: int, samples: int, enabled: bool
    ) -> None:
        self.name, self.sample_rate, self.total = name, sample_rate, total
        self.enabled = enabled
        self.t0 = self.last = time.monotonic()
        self.start_samples = samples
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total, initial=done, unit="file", desc=f"[cache] {name}", file=sys.stderr
            )

    def note(self, message: str) -> None:
        if self.enabled:
            print(f"[cache] {self.name}: {message}", file=sys.stderr)

    def _text(self, samples: int) -> str:
        hours = samples / self.sample_rate / 3600
        minutes = max(time.monotonic() - self.t0, 1e-9) / 60
        rate = (samples - self.start_samples) / self.sample_rate / 3600 / minutes
        return f"{hours:.2f} h audio, {rate:.2f} h/min"

    def update(self, done: int, samples: int) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.n = done
            self.bar.set_postfix_str(self._text(samples), refresh=False)
            if time.monotonic() - self.last > 0.5 or done == self.total:
                self.bar.refresh()
                self.last = time.monotonic()
        elif time.monotonic() - self.last > 10.0 or done == self.total:
            self.last = time.monotonic()
            print(
                f"[cache] {self.name} @ {self.sample_rate} Hz: {done}/{self.total} files, "
                f"{self._text(samples)}, {self.last - self.t0:.0f} s",
                file=sys.stderr,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
