"""Peak RSS and speed of `upsample.py` for short vs long inputs, each in a fresh process.

    python -m audio_superres.bench upsample --ckpt CKPT [--upsample-seconds 30 1800]
        [--upsample-kinds lr lr44k hr]   (or `python -m audio_superres.bench.upsample --ckpt ...`)

tracemalloc sees numpy but not torch's allocator; the resident set size of the whole process is
what a user pays. Each (input kind, length) runs `python upsample.py ... device=cpu` as its own
child and reads that child's `ru_maxrss` from `os.wait4`, so no run inherits another's peak.
Inputs are real speech (the VCTK test clips, or any `--speech` files) tiled to the length:

- `lr`:    a file at the model's LR rate (`sample_rate / ratio`): streamed straight through.
- `lr44k`: a 44.1 kHz file given as `input_kind=lr`: block-wise resampled to the LR rate first.
- `hr`:    a 44.1 kHz file given as `input_kind=hr`: resampled to `sample_rate`, then degraded
           with the checkpoint's filter, block by block.

The speed is upsample.py's own per-file time (its log line "... s of audio in ... s"), so the
fixed cost of starting Python, importing torch and loading the checkpoint is left out of it.
Prints one JSON line per run and one `ratio` line per kind (longest vs shortest length).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from audio_superres.data.audio_io import read_audio, to_mono
from audio_superres.dsp.resample import resample_audio

DEFAULT_SECONDS = (30.0, 1800.0)
KINDS = {"lr": ("lr", None), "lr44k": ("lr", 44100), "hr": ("hr", 44100)}


def write_tiled(path: Path, speech: np.ndarray, sr: int, seconds: float) -> None:
    """`seconds` of `speech` (at `sr`) repeated, written block by block as 16-bit WAV."""
    n = int(round(seconds * sr))
    with sf.SoundFile(str(path), "w", samplerate=sr, channels=1, subtype="PCM_16") as f:
        while n > 0:
            block = speech[:n]
            f.write(block)
            n -= len(block)


def run_upsample(
    ckpt: str, src: Path, out: Path, input_kind: str, extra: Sequence[str]
) -> dict[str, Any]:
    """One `upsample.py` child: its wall time and peak RSS (MiB) from `os.wait4`."""
    repo = repo_root()
    cmd = [
        sys.executable,
        str(repo / "upsample.py"),
        f"ckpt_path={ckpt}",
        f"input={src}",
        f"output={out}",
        f"input_kind={input_kind}",
        "device=cpu",
        "progress=false",
        f"hydra.run.dir={out / 'run'}",
        *extra,
    ]
    env = {
        **os.environ,
        "PYTHONPATH": f"{repo / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=out, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    err = proc.stdout.read()  # drained before waiting, so a chatty child cannot block
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{err.decode(errors='replace')[-3000:]}")
    text = err.decode(errors="replace")
    found = re.findall(r"s of audio in ([0-9.]+) s", text)
    if not found:
        raise RuntimeError(f"no timing line in upsample.py's log:\n{text[-3000:]}")
    return {
        "wall_s": round(wall, 2),
        "process_s": float(found[-1]),
        "peak_rss_MiB": round(usage.ru_maxrss / 1024, 1),
    }


def repo_root() -> Path:
    """The repository (where upsample.py lives): the parent of its conf/."""
    from audio_superres.runs import find_conf_dir

    return find_conf_dir().parent


def default_speech() -> list[str]:
    """The VCTK test clips next to the repository (`../shared/data/vctk_test_clips/hr`)."""
    return sorted(str(f) for f in (repo_root().parent / "shared/data/vctk_test_clips/hr").glob("*"))


def upsample_figures(
    ckpt: str,
    seconds: Sequence[float] = DEFAULT_SECONDS,
    kinds: Sequence[str] = tuple(KINDS),
    speech: Sequence[str] = (),
    extra: Sequence[str] = (),
    workdir: str | None = None,
) -> list[dict[str, Any]]:
    """Run every (kind, length) in a fresh process; print one JSON line per run and per kind."""
    import torch

    from audio_superres.bench.records import emit
    from audio_superres.checkpoint import load_checkpoint

    speech = list(speech) or default_speech()
    if not speech:
        raise SystemExit("error: no speech files to tile: pass --speech FILE ...")
    ckpt = str(Path(ckpt).resolve())  # upsample.py runs in the work dir
    hp = load_checkpoint(ckpt)["hyper_parameters"]
    lr_rate = int(hp["sample_rate"]) // int(hp["ratio"])
    clips = []
    for f in speech:
        x, sr = read_audio(f)
        clips.append(resample_audio(to_mono(x), sr, 44100))
    speech44 = np.concatenate(clips)
    tiles = {44100: speech44, lr_rate: resample_audio(speech44, 44100, lr_rate)}
    records = []
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        for kind in kinds:
            input_kind, rate = KINDS[kind]
            rate = rate or lr_rate
            rows = {}
            for length in seconds:
                src, out = Path(tmp) / f"{kind}_{length:g}s.wav", Path(tmp) / f"out_{kind}"
                out.mkdir(exist_ok=True)
                write_tiled(src, tiles[rate], rate, length)
                row = {
                    "figure": "upsample_rss",
                    "kind": kind,
                    "input_rate": rate,
                    "seconds_audio": length,
                    "threads": torch.get_num_threads(),
                    **run_upsample(ckpt, src, out, input_kind, extra),
                }
                row["ms_per_audio_s"] = round(1000 * row["process_s"] / length, 1)
                rows[length] = row
                records.append(emit(row))
                src.unlink()
                for f in out.rglob("*.wav"):
                    f.unlink()
            lo, hi = min(seconds), max(seconds)
            records.append(emit({
                "figure": "upsample_rss_ratio",
                "kind": kind,
                "short_s": lo,
                "long_s": hi,
                "rss_ratio": round(rows[hi]["peak_rss_MiB"] / rows[lo]["peak_rss_MiB"], 3),
                "speed_ratio": round(
                    rows[hi]["ms_per_audio_s"] / max(rows[lo]["ms_per_audio_s"], 1e-9), 3
                ),
            }))
    return records


def main(argv: Sequence[str] | None = None) -> None:
    """The `upsample` section alone (`python -m audio_superres.bench upsample` is the same)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--seconds", type=float, nargs="+", default=list(DEFAULT_SECONDS))
    p.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    p.add_argument("--speech", nargs="*", default=[],
                   help="real recordings to tile (default: the VCTK test clips)")
    p.add_argument("--workdir", default=None, help="where inputs/outputs go (default: a tmp dir)")
    p.add_argument("extra", nargs="*", help="more upsample.py overrides, e.g. batch_size=4")
    args = p.parse_args(argv)
    upsample_figures(args.ckpt, args.seconds, args.kinds, args.speech, args.extra, args.workdir)


if __name__ == "__main__":
    main()
