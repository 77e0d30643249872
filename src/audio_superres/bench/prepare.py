"""Measure cache preparation: hours of audio per minute and peak memory.

    python -m audio_superres.bench cache --corpus-root ROOT [--sample-rate 16000] [--workers -1]
    python -m audio_superres.bench.prepare --hours 1 --out /tmp/synth48k \
        [--target-sr 16000 48000] [--workers -1]

`cache` prepares (decodes + resamples into the cache) any folder corpus and prints its throughput
and the peak resident memory of the process and of its largest decoding worker. The module's own
command writes (once) a VCTK-like corpus of `--hours` of 48 kHz 24-bit FLAC (2-6 s files, 20
speakers), then runs `cache` on it at each target rate in a fresh process, so the peak RSS
reported is that of the preparation alone. Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from audio_superres.utils import atomic_path, atomic_write_json

__all__ = ["main", "make_synthetic_corpus", "prepare_folder"]

SR = 48_000


def _signal(rng: np.random.Generator, n: int) -> np.ndarray:
    """Harmonics of a gliding pitch, an envelope and noise: broadband like speech."""
    t = np.arange(n) / SR
    f0 = rng.uniform(90, 220) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum((0.5 / k) * np.sin(k * phase) for k in range(1, 12))
    x = x * 0.5 * (1 + np.sin(2 * np.pi * rng.uniform(1, 3) * t)) + 0.02 * rng.standard_normal(n)
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def make_synthetic_corpus(out: Path, hours: float, seed: int = 0) -> dict[str, float | int]:
    """`out/spkNN/uNNNNN.flac` totalling `hours` at 48 kHz; reused when already complete."""
    done = out / "corpus.json"
    if done.is_file():
        info = json.loads(done.read_text())
        if info.get("hours_requested") == hours:
            return info
        shutil.rmtree(out)
    rng = np.random.default_rng(seed)
    total, files, target = 0, 0, round(hours * 3600 * SR)
    t0 = time.monotonic()
    while total < target:
        n = min(round(rng.uniform(2.0, 6.0) * SR), target - total)
        path = out / f"spk{files % 20:02d}" / f"u{files:05d}.flac"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            sf.write(str(tmp), _signal(rng, n), SR, subtype="PCM_24", format="FLAC")
        total += n
        files += 1
    info = {
        "hours_requested": hours,
        "hours": total / SR / 3600,
        "files": files,
        "seconds": time.monotonic() - t0,
    }
    atomic_write_json(done, info)
    return info


def prepare_folder(
    root: Path,
    sample_rate: int = 16000,
    cache_dir: Path = Path("data/cache"),
    workers: int = -1,
    trim_silence: bool = False,
    on_bad_file: str = "error",
) -> dict[str, Any]:
    """Prepare the cache of a folder corpus; emit and return its throughput and peak memory."""
    import resource

    from audio_superres.bench.records import emit
    from audio_superres.data.cache import build_cache, resolve_workers
    from audio_superres.data.corpora import FolderCorpus

    corpus = FolderCorpus(root, trim_silence=trim_silence)
    t0 = time.monotonic()
    cached = build_cache(corpus, sample_rate, cache_dir, workers, on_bad_file=on_bad_file)
    seconds = time.monotonic() - t0
    hours = cached.duration_s / 3600
    n_workers = resolve_workers(workers)
    record = {
        "figure": "cache_prepare",
        "corpus": str(root),
        "cache": str(cached.path),
        "files": len(cached),
        "hours_audio": round(hours, 4),
        "sample_rate": cached.sample_rate,
        "workers": n_workers,
        "wall_s": round(seconds, 2),
        "hours_per_minute": round(hours / max(seconds, 1e-9) * 60, 4),
        "peak_rss_mib_main": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if n_workers > 1:
        record["peak_rss_mib_largest_worker"] = round(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1
        )
    return emit(record)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=Path("/tmp/audio_superres_synth48k"))
    parser.add_argument("--target-sr", type=int, nargs="+", default=[16000, 48000])
    parser.add_argument("--workers", type=int, default=-1)
    args = parser.parse_args(argv)
    corpus = args.out / "corpus"
    info = make_synthetic_corpus(corpus, args.hours)
    print(f"{corpus}: {info['files']} files, {info['hours']:.3f} h at 48 kHz (FLAC 24-bit)")
    for sr in args.target_sr:
        cache_dir = args.out / f"cache-{sr}"
        shutil.rmtree(cache_dir, ignore_errors=True)
        cmd = [
            sys.executable,
            "-m",
            "audio_superres.bench",
            "cache",
            "--corpus-root",
            str(corpus),
            "--sample-rate",
            str(sr),
            "--cache-dir",
            str(cache_dir),
            "--prepare-workers",
            str(args.workers),
        ]
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            print(res.stderr, file=sys.stderr)
            return res.returncode
        print(res.stdout.strip())
        shutil.rmtree(cache_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
