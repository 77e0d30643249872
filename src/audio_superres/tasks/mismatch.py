"""The filter-mismatch study: test one model (and cubic) under several low-pass filters.

The 2017 model is "very sensitive to how low resolution samples are generated"; this scores a
model on inputs made by each test filter in turn (always through `make_lowres`) and writes
`mismatch.csv`, one row per test filter, beside `metrics.json`. Used by evaluate.py
(`test_lowpass=[...]`) and by train.py's final test (same key), so a grid job and a later
evaluation of its checkpoint produce the same table.
"""

from __future__ import annotations

import copy
import csv
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import OmegaConf

from audio_superres.dsp.lowpass import LowpassSpec, as_lowpass_spec, lowpass_to_dict
from audio_superres.metrics import ALL_METRIC_KEYS, METRIC_KEYS, METRIC_LABELS
from audio_superres.module import SuperResolutionModule
from audio_superres.report.page import evaluation_page
from audio_superres.report.results import write_results
from audio_superres.utils import atomic_write_text

# The header of mismatch.csv (read by the samples page and the sweep tools): every metric of
# `metrics.METRIC_KEYS` for the model, then for cubic; PESQ/STOI columns follow when computed.
MISMATCH_COLUMNS = (
    "test_lowpass",
    "n_files",
    *(f"model_{k}" for k in METRIC_KEYS),
    *(f"cubic_{k}" for k in METRIC_KEYS),
)


def mismatch_columns(results: Sequence[FilterResult]) -> list[str]:
    """`MISMATCH_COLUMNS`, with the perceptual metrics when every filter's summary has them."""
    keys = [k for k in ALL_METRIC_KEYS if results and all(k in r.summary["model"] for r in results)]
    return ["test_lowpass", "n_files", *(f"{w}_{k}" for w in ("model", "cubic") for k in keys)]


@dataclass
class FilterResult:
    """One test filter's scores: the module's test summary, per-file rows and examples."""

    name: str
    spec: LowpassSpec
    summary: dict[str, Any]
    rows: list[dict[str, Any]]
    examples: list[dict[str, Any]]


def parse_test_lowpass(test_lowpass: Any) -> list[tuple[str, LowpassSpec]]:
    """`[none, chebyshev, {kind: elliptic, order: 4, name: ell4}, ...]` -> (name, spec) pairs.

    A name gives that kind with the defaults of conf/lowpass/<name>.yaml (= LowpassSpec's); a
    mapping may carry a `name` for its column (default: its kind). Names must be unique.
    """
    if OmegaConf.is_config(test_lowpass):
        test_lowpass = OmegaConf.to_container(test_lowpass, resolve=True)
    if isinstance(test_lowpass, (str, Mapping)):
        test_lowpass = [test_lowpass]
    if not isinstance(test_lowpass, Sequence) or not test_lowpass:
        raise ValueError(
            f"test_lowpass must be a non-empty list of low-pass names or mappings, "
            f"got {test_lowpass!r}"
        )
    out: list[tuple[str, LowpassSpec]] = []
    for item in test_lowpass:
        if isinstance(item, Mapping):
            item = dict(item)
            name = str(item.pop("name", item.get("kind", "")))
            spec = as_lowpass_spec(item)
        else:
            spec = as_lowpass_spec(str(item))
            name = spec.kind
        out.append((name, spec))
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise ValueError(f"test_lowpass names must be unique, got {names}: give mappings a name")
    return out


def evaluate_filters(
    trainer: L.Trainer,
    module: SuperResolutionModule,
    datamodule: L.LightningDataModule,
    filters: Sequence[tuple[str, LowpassSpec]],
    ckpt_path: str | None = None,
    on_result: Callable[[int, FilterResult], None] | None = None,
) -> list[FilterResult]:
    """`trainer.test` once per filter on the same files; the module's own low-pass is restored.

    Each filter's logged keys carry its name (`test/<name>/snr`, `test/<name>/audio_0/SR`, ...),
    so the logger keeps every filter, not only the last. `on_result(i, result)` is called after
    each filter (progress and cost reports)."""
    original = module.lowpass
    results = []
    try:
        for name, spec in filters:
            module.set_lowpass(spec)
            module.test_filter = name
            trainer.test(
                module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True, verbose=False
            )
            results.append(
                FilterResult(
                    name=name,
                    spec=spec,
                    summary=copy.deepcopy(module.test_summary),
                    rows=list(module.test_rows),
                    examples=list(module.test_examples),
                )
            )
            if on_result is not None:
                on_result(len(results) - 1, results[-1])
    finally:
        module.set_lowpass(original)
        module.test_filter = None
    return results


def mismatch_rows(results: Sequence[FilterResult]) -> list[dict[str, Any]]:
    """One row per test filter with the `mismatch_columns`."""
    columns = mismatch_columns(results)
    rows = []
    for r in results:
        row: dict[str, Any] = {"test_lowpass": r.name, "n_files": r.summary["n_files"]}
        for column in columns[2:]:
            who, key = column.split("_", 1)
            row[column] = r.summary[who][key]
        rows.append(row)
    return rows


def write_mismatch_csv(path: Path, results: Sequence[FilterResult]) -> Path:
    """mismatch.csv (written atomically); floats with 6 significant digits."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=mismatch_columns(results), lineterminator="\n")
    writer.writeheader()
    for row in mismatch_rows(results):
        writer.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()})
    atomic_write_text(path, buf.getvalue())
    return path


def score_under_filters(
    trainer: L.Trainer,
    module: SuperResolutionModule,
    datamodule: L.LightningDataModule,
    test_lowpass: Any,
    output_dir: Path,
    meta: Mapping[str, Any],
    ckpt_path: str | None = None,
    on_result: Callable[[int, FilterResult], None] | None = None,
) -> tuple[Path, list[FilterResult]]:
    """Test under every filter; write metrics.json (first filter on top, all under
    `by_lowpass`), per_file.csv and examples of the first filter, and mismatch.csv."""
    results = evaluate_filters(
        trainer, module, datamodule, parse_test_lowpass(test_lowpass), ckpt_path, on_result
    )
    first = results[0]
    by_lowpass = {
        r.name: {
            "model": r.summary["model"],
            "cubic": r.summary["cubic"],
            "n_files": r.summary["n_files"],
            **({"perceptual": r.summary["perceptual"]} if r.summary.get("perceptual") else {}),
            # input_conditioning auto/always: the mode and how many files were re-filtered
            **{k: r.summary[k] for k in ("conditioning",) if r.summary.get(k)},
            "lowpass_spec": lowpass_to_dict(r.spec),
        }
        for r in results
    }
    full_meta = {**meta, "test_lowpass": first.name, "by_lowpass": by_lowpass}
    path = write_results(output_dir, first.summary, first.rows, first.examples, full_meta)
    write_mismatch_csv(output_dir / "mismatch.csv", results)
    # the samples page of the first filter, with the mismatch table
    evaluation_page(output_dir, first.summary, first.rows, first.examples, full_meta)
    return path, results


def format_mismatch(results: Sequence[FilterResult]) -> str:
    """Console table: every metric (but the 2017 LSD) of model and cubic under each filter."""
    columns = mismatch_columns(results)
    keys = [c.split("_", 1)[1] for c in columns if c.startswith("model_")]
    keys = [k for k in keys if k != "lsd_paper"]
    width = max([14, *(len(r.name) + 2 for r in results)])
    lines = [f"{'test filter':<{width}}{'':<7}" + "".join(f"{METRIC_LABELS[k]:>13}" for k in keys)]
    for row in mismatch_rows(results):
        for who in ("model", "cubic"):
            name = row["test_lowpass"] if who == "model" else ""
            lines.append(
                f"{name:<{width}}{who:<7}" + "".join(f"{row[f'{who}_{k}']:>13.3f}" for k in keys)
            )
    return "\n".join(lines)
