"""Writing evaluation results: metrics.json, per_file.csv, example WAVs and the console table."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from audio_superres.utils import atomic_write_json, atomic_write_text

METRIC_NAMES = {"snr": "SNR (dB)", "lsd": "LSD", "lsd_hf": "LSD-HF", "lsd_paper": "LSD (paper)"}


def format_table(metrics: Mapping[str, Any], keys: Sequence[str] = ("snr", "lsd", "lsd_hf")) -> str:
    """Model vs cubic, and the model's gain (positive = better for every column)."""
    head = f"{'':<8}" + "".join(f"{METRIC_NAMES[k]:>12}" for k in keys)
    lines = [head]
    for who in ("model", "cubic"):
        lines.append(f"{who:<8}" + "".join(f"{metrics[who][k]:>12.3f}" for k in keys))
    gain = [
        metrics["model"][k] - metrics["cubic"][k]
        if k == "snr"
        else metrics["cubic"][k] - metrics["model"][k]
        for k in keys
    ]
    lines.append(f"{'gain':<8}" + "".join(f"{g:>+12.3f}" for g in gain))
    return "\n".join(lines)


def write_per_file_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}
            )
    atomic_write_text(path, buf.getvalue())


def write_examples(
    out_dir: Path, examples: Sequence[Mapping[str, Any]], sample_rate: int, ratio: int
) -> list[Path]:
    """hr / lr / cubic / sr WAVs of the first few files, named after the source file."""
    from audio_superres.data.audio_io import write_audio

    written = []
    for i, ex in enumerate(examples):
        stem = Path(str(ex["name"])).with_suffix("").as_posix().replace("/", "__")
        for kind in ("hr", "lr", "cubic", "sr"):
            rate = round(sample_rate / ratio) if kind == "lr" else sample_rate
            path = out_dir / f"{i:02d}_{stem}_{kind}.wav"
            write_audio(path, np.asarray(ex[kind], dtype=np.float32)[None, :], rate)
            written.append(path)
    return written


def write_results(
    out_dir: Path,
    summary: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    examples: Sequence[Mapping[str, Any]],
    meta: Mapping[str, Any],
) -> Path:
    """The files every evaluation leaves behind; returns the path of metrics.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = {
        "model": summary["model"],
        "cubic": summary["cubic"],
        "n_files": summary["n_files"],
        **meta,
    }
    write_per_file_csv(out_dir / "per_file.csv", rows)
    write_examples(out_dir / "examples", examples, meta["sample_rate"], meta["ratio"])
    path = out_dir / "metrics.json"
    atomic_write_json(path, metrics)
    return path
