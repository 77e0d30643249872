"""The samples page (`report/index.html`): the 2017 project page, generated from any run.

Per example: audio players for High Resolution / Low Resolution / Cubic Baseline / Super
Resolution (HR is absent for real low-res inputs), one spectrogram image of the signals, and the
per-file metrics when there is a reference. Above them, summary tables (model vs cubic, the
filter-mismatch table of multi-filter evaluations, or the list of upsampled files).

The page is self-contained: every WAV and PNG it shows is written next to it in the same folder
and linked by a relative name, so the folder can be zipped, copied or opened from disk.
"""

from __future__ import annotations

import csv
import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from audio_superres.dsp.lowpass import describe_lowpass
from audio_superres.metrics import ALL_METRIC_KEYS, METRIC_LABELS
from audio_superres.report.results import perceptual_note, table_keys
from audio_superres.utils import atomic_write_bytes, atomic_write_text

__all__ = [
    "LABELS",
    "PageExample",
    "Table",
    "evaluation_meta",
    "read_csv_table",
    "speaker_note",
    "write_samples_page",
]

# Signal keys in page order, with the 2017 page's captions.
LABELS = {
    "HR": "High Resolution",
    "LR": "Low Resolution",
    "cubic": "Cubic Baseline",
    "SR": "Super Resolution",
}


@dataclass
class PageExample:
    """One example: signals keyed by `LABELS` keys, their sample rates, optional metrics."""

    name: str
    signals: Mapping[str, np.ndarray]
    rates: Mapping[str, int]
    metrics: Mapping[str, float] = field(default_factory=dict)
    note: str = ""


@dataclass
class Table:
    """A titled table of already formatted cells."""

    title: str
    header: Sequence[str]
    rows: Sequence[Sequence[Any]]


def read_csv_table(path: Path, title: str) -> Table:
    """A CSV file (header + rows) as a page table; numbers shown with 3 decimals."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError(f"{path}: empty CSV, expected a header row")

    def cell(v: str) -> str:
        try:
            x = float(v)
        except ValueError:
            return v
        return v if x.is_integer() and "." not in v else f"{x:.3f}"

    return Table(title, rows[0], [[cell(v) for v in r] for r in rows[1:]])


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:80] or "example"


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _table_html(t: Table) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in t.header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>"
        for row in t.rows
    )
    return (
        f"<h2>{html.escape(t.title)}</h2>\n<table><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table>\n"
    )


_STYLE = """
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.example { border-top: 1px solid #ddd; padding: 1em 0; }
.players { display: flex; flex-wrap: wrap; gap: 1em; }
.players figure { margin: 0; }
.players figcaption { font-weight: bold; margin-bottom: 0.3em; }
img { max-width: 100%; }
.meta { color: #555; font-size: 0.9em; }
"""


def write_samples_page(
    report_dir: str | Path,
    examples: Sequence[PageExample],
    *,
    title: str,
    intro: str = "",
    tables: Sequence[Table] = (),
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write the example WAVs, spectrogram PNGs and `index.html` into `report_dir`.

    Every file is written atomically; returns the path of index.html.
    """
    from audio_superres.data.audio_io import write_audio
    from audio_superres.report.plots import figure_to_png, spectrogram_figure

    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    parts = [
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if intro:
        parts.append(f"<p>{html.escape(intro)}</p>")
    if meta:
        items = "".join(
            f"<li>{html.escape(str(k))}: <code>{html.escape(str(v))}</code></li>"
            for k, v in meta.items()
        )
        parts.append(f"<ul class='meta'>{items}</ul>")
    parts.extend(_table_html(t) for t in tables)
    if examples:
        parts.append("<h2>Samples</h2>")
    for i, ex in enumerate(examples):
        stem = f"{i:02d}_{_slug(str(Path(ex.name).with_suffix('')))}"
        keys = [k for k in LABELS if k in ex.signals]
        players = []
        for k in keys:
            fname = f"{stem}_{k.lower()}.wav"
            write_audio(
                report_dir / fname, np.asarray(ex.signals[k], dtype=np.float32), ex.rates[k]
            )
            players.append(
                f"<figure><figcaption>{LABELS[k]}</figcaption>"
                f"<audio controls preload='auto' src='{html.escape(fname)}'></audio></figure>"
            )
        png_name = f"{stem}_spectrogram.png"
        fig = spectrogram_figure(
            {LABELS[k]: ex.signals[k] for k in keys}, {LABELS[k]: ex.rates[k] for k in keys}
        )
        atomic_write_bytes(report_dir / png_name, figure_to_png(fig))
        parts.append(f"<div class='example'><h3>{html.escape(ex.name)}</h3>")
        if ex.note:
            parts.append(f"<p class='meta'>{html.escape(ex.note)}</p>")
        if ex.metrics:
            parts.append(
                _table_html(Table("", list(ex.metrics), [list(ex.metrics.values())])).replace(
                    "<h2></h2>\n", ""
                )
            )
        parts.append(f"<div class='players'>{''.join(players)}</div>")
        parts.append(
            f"<img src='{html.escape(png_name)}' alt='spectrograms of {html.escape(ex.name)}'>"
            "</div>"
        )
    parts.append("</body></html>\n")
    path = report_dir / "index.html"
    atomic_write_text(path, "\n".join(parts))
    return path


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def speaker_note(name: str, speaker: str | None) -> str:
    """`speaker X` when X is a folder of the file's path in the corpus (`p360/p360_001.wav`);
    nothing for a flat folder, whose files all get the root folder's name as their speaker
    (`hr` for `data.root=.../hr`), nor for groups that are not folders (piano recordings)."""
    if not speaker or str(speaker) not in PurePosixPath(str(name)).parts[:-1]:
        return ""
    return f"speaker {speaker}"


def evaluation_meta(meta: Mapping[str, Any]) -> dict[str, str]:
    """The run's settings as a person reads them: the filter in one phrase (not every field of
    its spec), the model's class, the library versions on one line; the per-filter results
    (`by_lowpass`) are in the mismatch table already."""
    out: dict[str, str] = {}
    ratio, sr = meta.get("ratio"), meta.get("sample_rate")
    if ratio is not None and sr is not None:
        out["rates"] = f"{int(sr) // int(ratio)} Hz in, {int(sr)} Hz out ({int(ratio)}x)"
    spec = meta.get("lowpass_spec") or meta.get("lowpass")
    by_lowpass = meta.get("by_lowpass") or {}
    first = by_lowpass.get(meta.get("test_lowpass"), {}) if isinstance(by_lowpass, Mapping) else {}
    if first:  # a filter-mismatch evaluation: the examples are the first test filter's
        if spec is not None:
            out["model trained on"] = describe_lowpass(spec)
        test_spec = first.get("lowpass_spec") or meta["test_lowpass"]
        out["low-res input of the samples and summary"] = (
            f"{meta['test_lowpass']}: {describe_lowpass(test_spec)}"
        )
    elif spec is not None:
        out["low-res input made with"] = describe_lowpass(spec)
    if meta.get("model_target"):
        out["model"] = str(meta["model_target"]).rsplit(".", 1)[-1]
    for key in ("checkpoint", "seed"):
        if meta.get(key) is not None:
            out[key] = str(meta[key])
    versions = meta.get("versions")
    if isinstance(versions, Mapping):
        out["versions"] = ", ".join(f"{k} {v}" for k, v in versions.items())
    shown = {"ratio", "sample_rate", "lowpass", "lowpass_spec", "by_lowpass", "test_lowpass",
             "model_target", "checkpoint", "seed", "versions"}
    out.update({str(k): str(v) for k, v in meta.items() if k not in shown and v is not None})
    return out


def evaluation_page(
    out_dir: str | Path,
    summary: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    examples: Sequence[Mapping[str, Any]],
    meta: Mapping[str, Any],
) -> Path:
    """`out_dir/report/index.html` of an evaluation: summary, mismatch table, the examples.

    `mismatch.csv` beside metrics.json (multi-filter evaluations) is shown when it exists.
    """
    out_dir = Path(out_dir)
    sr, ratio = int(meta["sample_rate"]), int(meta["ratio"])
    keys = table_keys(summary, include_paper_lsd=True)
    header = ["", *(METRIC_LABELS[k] for k in keys)]
    table_rows = [[who, *(float(summary[who][k]) for k in keys)] for who in ("model", "cubic")]
    title = f"Summary over {summary.get('n_files', len(rows))} files"
    note = perceptual_note(summary)
    tables = [Table(f"{title} ({note})" if note else title, header, table_rows)]
    mismatch = out_dir / "mismatch.csv"
    if mismatch.is_file():
        tables.append(read_csv_table(mismatch, "Filter mismatch (model trained on one filter)"))
    by_name = {str(r["name"]): r for r in rows}
    page_examples = []
    for ex in examples:
        row = by_name.get(str(ex["name"]), {})
        shown = [k for k in ALL_METRIC_KEYS if k in row and k != "lsd_paper"]
        metrics = {METRIC_LABELS[k]: float(row[k]) for k in shown}
        metrics.update(
            {f"cubic {METRIC_LABELS[k]}": float(row[f"cubic_{k}"]) for k in shown
             if f"cubic_{k}" in row}  # fmt: skip
        )
        page_examples.append(
            PageExample(
                name=str(ex["name"]),
                signals={"HR": ex["hr"], "LR": ex["lr"], "cubic": ex["cubic"], "SR": ex["sr"]},
                rates={"HR": sr, "LR": round(sr / ratio), "cubic": sr, "SR": sr},
                metrics=metrics,
                note=speaker_note(str(ex["name"]), ex.get("speaker")),
            )
        )
    return write_samples_page(
        out_dir / "report",
        page_examples,
        title=f"Audio super-resolution samples ({ratio}x, {sr} Hz)",
        intro=(
            "Held-out recordings: the low-res input is made from the high-res file with the "
            f"low-pass filter named below, keeping every {_ordinal(ratio)} sample; the model's "
            "output is compared with the cubic spline baseline."
        ),
        tables=tables,
        meta=evaluation_meta(meta),
    )
