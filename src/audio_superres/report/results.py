"""Writing evaluation results: metrics.json, per_file.csv, example WAVs and the console table."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from audio_superres.metrics import ALL_METRIC_KEYS, HIGHER_IS_BETTER, METRIC_LABELS
from audio_superres.utils import atomic_write_json, atomic_write_text

METRIC_NAMES = METRIC_LABELS  # column headers, defined with the metrics


def table_keys(metrics: Mapping[str, Any], include_paper_lsd: bool = False) -> list[str]:
    """The metric keys a summary holds, in table order (`metrics.ALL_METRIC_KEYS`).

    The 2017-code LSD is left out unless asked for: it only compares with the 2017 table.
    """
    present = metrics.get("model", {})
    return [
        k
        for k in ALL_METRIC_KEYS
        if k in present and (include_paper_lsd or k != "lsd_paper")
    ]


def perceptual_note(summary: Mapping[str, Any]) -> str:
    """One line saying at which rate PESQ/STOI were computed and how many files they cover."""
    info = summary.get("perceptual")
    if not info:
        return ""
    rate = int(info["sample_rate"])
    origin = info.get("resampled_from")
    where = f"at {rate // 1000} kHz" + (f" (resampled from {origin} Hz)" if origin else "")
    covered = []
    for who in ("model", "cubic"):
        counts = info["n_files"][who]
        covered.append(
            f"{who} " + ", ".join(f"{METRIC_LABELS[k]} {counts[k]}" for k in counts)
        )
    total = info.get("n_files_total", summary.get("n_files"))
    return (
        f"PESQ (wideband, P.862.2) and STOI {where}; files averaged (NaN skipped) of {total}: "
        + "; ".join(covered)
    )


def format_table(metrics: Mapping[str, Any], keys: Sequence[str] | None = None) -> str:
    """Model vs cubic, and the model's gain (positive = better for every column).

    `keys` defaults to every metric the summary holds (`table_keys`); a line under the table
    says at which rate PESQ and STOI were computed, when they were.
    """
    keys = table_keys(metrics) if keys is None else list(keys)
    head = f"{'':<8}" + "".join(f"{METRIC_NAMES[k]:>13}" for k in keys)
    lines = [head]
    for who in ("model", "cubic"):
        lines.append(f"{who:<8}" + "".join(f"{metrics[who][k]:>13.3f}" for k in keys))
    gain = [
        metrics["model"][k] - metrics["cubic"][k]
        if k in HIGHER_IS_BETTER
        else metrics["cubic"][k] - metrics["model"][k]
        for k in keys
    ]
    lines.append(f"{'gain':<8}" + "".join(f"{g:>+13.3f}" for g in gain))
    note = perceptual_note(metrics)
    if note:
        lines.append(note)
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
        **({"perceptual": summary["perceptual"]} if summary.get("perceptual") else {}),
        # input_conditioning auto/always: the mode and how many files were re-filtered
        **({"conditioning": summary["conditioning"]} if summary.get("conditioning") else {}),
        **meta,
    }
    write_per_file_csv(out_dir / "per_file.csv", rows)
    write_examples(out_dir / "examples", examples, meta["sample_rate"], meta["ratio"])
    path = out_dir / "metrics.json"
    atomic_write_json(path, metrics)
    return path
