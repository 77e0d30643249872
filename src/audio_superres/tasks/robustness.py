"""The robustness benchmark: one checkpoint under a grid of degradations nobody trained on.

`python evaluate.py ckpt_path=CKPT degradations=robustness` (conf/degradations/robustness.yaml):
the four filter families x orders x cutoffs x one pass / zero phase, plus further conditions (no
filter, resamplers, MP3), each scored through the filter-mismatch machinery (`tasks.mismatch`:
one `trainer.test` per condition, the one inference path and metrics module), on a fixed subset
of the held-out files. Writes `robustness.csv`, `summary.md` and `robustness_snr_gain.png` /
`robustness_lsd.png` beside metrics.json and mismatch.csv, and the same to W&B when a W&B logger
is on (docs/mismatch.md).
"""

from __future__ import annotations

import csv
import io
import logging
import math
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from audio_superres.errors import ConfigError
from audio_superres.tasks.mismatch import FilterResult, parse_test_lowpass
from audio_superres.utils import atomic_write_text, atomic_write_with

log = logging.getLogger(__name__)

GRID_KEYS = ("name", "families", "orders", "cutoffs", "zero_phase", "extra", "files")
METRICS = ("snr", "si_sdr", "lsd", "lsd_hf")
ROBUSTNESS_COLUMNS = (
    "condition",
    "kind",
    "order",
    "cutoff",
    "zero_phase",
    "codec",
    "bitrate_kbps",
    "n_files",
    *(f"{who}_{k}" for k in METRICS for who in ("model", "cubic")),
    "snr_gain",
    "si_sdr_gain",
    "lsd_gain",
    "lsd_hf_gain",
    # evaluate.py input_conditioning (off | auto | always) and how many of the condition's
    # n_files the model got re-filtered (0 under off: nothing measured, nothing re-filtered)
    "input_conditioning",
    "n_refiltered",
)
PHASE_LABEL = {True: "zp", False: "1p"}


def filter_condition_name(family: str, order: int, cutoff: float, zero_phase: bool) -> str:
    """`chebyshev_o6_c0.8_zp`: family, order, cutoff, zp (zero phase) or 1p (one pass)."""
    return f"{family}_o{order}_c{cutoff:g}_{PHASE_LABEL[bool(zero_phase)]}"


def grid_conditions(grid: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The grid's conditions as `test_lowpass` mappings (each with its `name`), filters first."""
    if OmegaConf.is_config(grid):
        grid = OmegaConf.to_container(grid, resolve=True)
    if not isinstance(grid, Mapping):
        raise ConfigError(f"degradations must be a mapping (conf/degradations/), got {grid!r}")
    unknown = sorted(set(grid) - set(GRID_KEYS))
    if unknown:
        raise ConfigError(
            f"degradations: unknown key(s) {unknown}; valid keys: {', '.join(GRID_KEYS)}"
        )
    conditions: list[dict[str, Any]] = []
    for family in grid.get("families") or []:
        for order in grid.get("orders") or []:
            for cutoff in grid.get("cutoffs") or []:
                for zero_phase in grid.get("zero_phase") or []:
                    conditions.append(
                        {
                            "name": filter_condition_name(family, order, cutoff, zero_phase),
                            "kind": family,
                            "order": order,
                            "cutoff": cutoff,
                            "zero_phase": zero_phase,
                        }
                    )
    for item in grid.get("extra") or []:
        if not isinstance(item, Mapping) or "name" not in item:
            raise ConfigError(
                f"degradations.extra: every entry is a lowpass mapping with a name, got {item!r}"
            )
        conditions.append(dict(item))
    if not conditions:
        raise ConfigError("degradations: the grid has no condition (families/orders/... or extra)")
    try:
        parse_test_lowpass(conditions)  # every condition is a valid spec, names unique
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"degradations: {exc}") from None
    return conditions


def grid_files(grid: Mapping[str, Any]) -> int | None:
    files = grid.get("files")
    if files is None:
        return None
    if isinstance(files, bool) or not isinstance(files, int) or files < 1:
        raise ConfigError(f"degradations.files must be a positive integer or null, got {files!r}")
    return files


# ---- the table ----------------------------------------------------------------------------


def robustness_rows(results: Sequence[FilterResult]) -> list[dict[str, Any]]:
    rows = []
    for r in results:
        model, cubic = r.summary["model"], r.summary["cubic"]
        spec = r.spec
        row: dict[str, Any] = {
            "condition": r.name,
            "kind": spec.kind,
            # None (a blank cell) where the setting does not apply
            "order": spec.order if spec.kind not in ("none", "resample") else None,
            "cutoff": spec.cutoff if spec.kind != "none" else None,
            "zero_phase": spec.zero_phase if spec.kind not in ("none", "resample") else None,
            "codec": spec.codec,
            "bitrate_kbps": spec.bitrate_kbps if spec.codec != "none" else None,
            "n_files": r.summary["n_files"],
        }
        for k in METRICS:
            row[f"model_{k}"] = float(model[k])
            row[f"cubic_{k}"] = float(cubic[k])
        row["snr_gain"] = row["model_snr"] - row["cubic_snr"]
        row["si_sdr_gain"] = row["model_si_sdr"] - row["cubic_si_sdr"]
        # LSD: lower is better, so the gain is cubic's minus the model's (as report.sweep)
        row["lsd_gain"] = row["cubic_lsd"] - row["model_lsd"]
        row["lsd_hf_gain"] = row["cubic_lsd_hf"] - row["model_lsd_hf"]
        conditioning = r.summary.get("conditioning") or {}
        row["input_conditioning"] = conditioning.get("input_conditioning", "off")
        row["n_refiltered"] = int(conditioning.get("n_refiltered", 0))
        rows.append(row)
    return rows


def write_robustness_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(ROBUSTNESS_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()})
    atomic_write_text(path, buf.getvalue())
    return path


def summary_markdown(rows: Sequence[Mapping[str, Any]], meta: Mapping[str, Any]) -> str:
    gains = [r["snr_gain"] for r in rows]
    worst = min(rows, key=lambda r: r["snr_gain"])
    best = max(rows, key=lambda r: r["snr_gain"])
    lsd_below = sum(r["model_lsd"] < r["cubic_lsd"] for r in rows)
    mean = sum(gains) / len(gains)
    lines = [
        f"# Robustness grid `{meta['grid_name']}`",
        "",
        f"- checkpoint: `{meta['checkpoint']}`",
        f"- command: `{meta['command']}`",
        f"- files: {meta['n_files']} {files_kind(meta)} "
        f"files of `{meta['data_root']}` "
        f"(test speakers {meta['test_speakers']}), {meta['file_choice']}; each file's scores "
        "under the first condition: per_file.csv",
        f"- conditions: {len(rows)} ({meta['grid_description']}); every low-res input made by "
        "`make_lowres`, seed "
        f"{meta['seed']}; ratio {meta['ratio']}, {meta['sample_rate']} Hz",
        f"- cost: {meta['seconds']:.0f} s in all, {meta['seconds'] / max(1, len(rows)):.1f} s "
        "per condition",
        f"- input conditioning: {_conditioning_line(rows, meta)}",
        "",
        "| SNR gain over cubic (dB) | condition | model SNR | cubic SNR | model LSD | cubic LSD |",
        "|---|---|---:|---:|---:|---:|",
        _summary_row("worst", worst),
        _summary_row("best", best),
        f"| **mean** | {len(rows)} conditions: {mean:+.2f} | "
        f"{_mean(rows, 'model_snr'):.2f} | {_mean(rows, 'cubic_snr'):.2f} | "
        f"{_mean(rows, 'model_lsd'):.3f} | {_mean(rows, 'cubic_lsd'):.3f} |",
        "",
        f"Model LSD below cubic's in {lsd_below} of {len(rows)} conditions; SNR gain >= -0.5 dB in "
        f"{sum(g >= -0.5 for g in gains)} of {len(rows)}.",
        "",
        "![SNR gain over cubic](robustness_snr_gain.png)",
        "",
        "| condition | SNR gain | model SNR | cubic SNR | SI-SDR gain | model LSD | cubic LSD "
        "| model LSD-HF | cubic LSD-HF |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    conditioned = _conditioning(rows, meta) != "off"
    if conditioned:  # one more column: how many files of the condition were re-filtered
        lines[-2] += " re-filtered |"
        lines[-1] += "---:|"
    for r in rows:
        lines.append(
            f"| {r['condition']} | {r['snr_gain']:+.2f} | {r['model_snr']:.2f} | "
            f"{r['cubic_snr']:.2f} | {r['si_sdr_gain']:+.2f} | {r['model_lsd']:.3f} | "
            f"{r['cubic_lsd']:.3f} | {r['model_lsd_hf']:.3f} | {r['cubic_lsd_hf']:.3f} |"
            + (f" {r['n_refiltered']} of {r['n_files']} |" if conditioned else "")
        )
    return "\n".join(lines) + "\n"


def files_kind(meta: Mapping[str, Any]) -> str:
    """What the grid's files are: `validation` (evaluate.py split=val) or `held-out`."""
    return "validation" if meta.get("split") == "val" else "held-out"


def _conditioning(rows: Sequence[Mapping[str, Any]], meta: Mapping[str, Any]) -> str:
    return str(
        meta.get("input_conditioning")
        or (rows[0].get("input_conditioning") if rows else None)
        or "off"
    )


def _conditioning_line(rows: Sequence[Mapping[str, Any]], meta: Mapping[str, Any]) -> str:
    mode = _conditioning(rows, meta)
    if mode == "off":
        return "`off`: the model got every input as made"
    when = "always" if mode == "always" else "only when its top band is louder than the training's"
    refiltered = sum(int(r.get("n_refiltered") or 0) for r in rows)
    scored = sum(int(r["n_files"]) for r in rows)
    touched = sum(bool(r.get("n_refiltered")) for r in rows)
    return (
        f"`{mode}` (as upsample.py's `input_conditioning={mode}`): each input measured and "
        f"re-filtered with the training filter {when} (dsp.bandwidth.condition_lowres); "
        f"{refiltered} of {scored} file scorings "
        f"re-filtered, in {touched} of {len(rows)} conditions (column re-filtered); cubic got "
        "every input as made"
    )


def _mean(rows: Sequence[Mapping[str, Any]], key: str) -> float:
    return sum(float(r[key]) for r in rows) / len(rows)


def _summary_row(label: str, r: Mapping[str, Any]) -> str:
    return (
        f"| **{label}** {r['snr_gain']:+.2f} | {r['condition']} | {r['model_snr']:.2f} | "
        f"{r['cubic_snr']:.2f} | {r['model_lsd']:.3f} | {r['cubic_lsd']:.3f} |"
    )


# ---- heatmaps -----------------------------------------------------------------------------

HEATMAPS = {
    "robustness_snr_gain.png": ("snr_gain", "SNR gain over cubic (dB), higher is better", "RdYlGn"),
    "robustness_lsd.png": ("model_lsd", "model LSD (cubic's in brackets), lower is better",
                           "viridis_r"),
}


def draw_heatmaps(out_dir: Path, rows: Sequence[Mapping[str, Any]]) -> list[Path]:
    """Filters as families x (order, cutoff, phase); the other conditions as one more strip."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    filters = [  # the family grid's conditions, by their names; `extra` ones go in the strip
        r for r in rows
        if r["order"] is not None and r["codec"] == "none"
        and r["condition"] == filter_condition_name(r["kind"], r["order"], r["cutoff"],
                                                    r["zero_phase"])
    ]
    others = [r for r in rows if r not in filters]
    families = list(dict.fromkeys(r["kind"] for r in filters))
    cols = list(dict.fromkeys((r["order"], r["cutoff"], r["zero_phase"]) for r in filters))
    written = []
    for name, (key, title, cmap) in HEATMAPS.items():
        grid = np.full((len(families), len(cols)), np.nan)
        for r in filters:
            col = cols.index((r["order"], r["cutoff"], r["zero_phase"]))
            grid[families.index(r["kind"]), col] = r[key]
        strip = np.array([[r[key] for r in others]]) if others else np.zeros((1, 0))
        values = np.concatenate([grid.ravel(), strip.ravel()])
        values = values[np.isfinite(values)]
        lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
        panels = [(grid, families, [f"o{o} c{c:g} {PHASE_LABEL[bool(z)]}" for o, c, z in cols])]
        if others:
            panels.append((strip, ["other"], [r["condition"] for r in others]))
        panels = [p for p in panels if p[0].size]
        width = 2.0 + 0.75 * max(p[0].shape[1] for p in panels)
        heights = [p[0].shape[0] + 1.5 for p in panels]
        fig, axes = plt.subplots(
            len(panels), 1, figsize=(width, 0.55 * sum(heights) + 1.0), layout="constrained",
            gridspec_kw={"height_ratios": heights}, squeeze=False,
        )
        for ax, (data, ylabels, xlabels) in zip(axes[:, 0], panels, strict=True):
            im = ax.imshow(data, cmap=cmap, aspect="auto", vmin=lo, vmax=hi)
            ax.set_xticks(range(len(xlabels)), xlabels, rotation=40, ha="right", fontsize=8)
            ax.set_yticks(range(len(ylabels)), ylabels, fontsize=8)
            for i in range(data.shape[0]):
                for j in range(data.shape[1]):
                    if np.isfinite(data[i, j]):
                        ax.text(j, i, f"{data[i, j]:.2f}", ha="center", va="center", fontsize=7)
        axes[0, 0].set_title(title, fontsize=10)
        fig.colorbar(im, ax=axes[:, 0].tolist())
        path = Path(out_dir) / name
        atomic_write_with(path, lambda p, fig=fig: fig.savefig(p, dpi=110))
        plt.close(fig)
        written.append(path)
    return written


def log_to_wandb(loggers: Sequence[Any], rows: Sequence[Mapping[str, Any]],
                 images: Sequence[Path]) -> None:
    """The table and heatmaps on every W&B logger's run (nothing without one)."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in loggers:
        if not isinstance(logger, WandbLogger):
            continue
        import wandb

        cols = list(ROBUSTNESS_COLUMNS)
        table = wandb.Table(columns=cols, data=[[r.get(c) for c in cols] for r in rows])
        payload: dict[str, Any] = {"robustness/table": table}
        for path in images:
            payload[f"robustness/{Path(path).stem}"] = wandb.Image(str(path))
        worst = min(rows, key=lambda r: r["snr_gain"])
        payload["robustness/worst_snr_gain"] = worst["snr_gain"]
        payload["robustness/mean_snr_gain"] = _mean(rows, "snr_gain")
        logger.experiment.log(payload)


# ---- the run ------------------------------------------------------------------------------


class CostReport:
    """`on_result` of `tasks.mismatch.evaluate_filters`: prints each condition and, after the
    first, the cost of the whole grid extrapolated from it."""

    def __init__(self, n_conditions: int, n_files: int) -> None:
        self.n = n_conditions
        self.n_files = n_files
        self.start = time.perf_counter()

    def __call__(self, i: int, result: FilterResult) -> None:
        elapsed = time.perf_counter() - self.start
        gain = result.summary["model"]["snr"] - result.summary["cubic"]["snr"]
        msg = f"robustness {i + 1}/{self.n} {result.name}: SNR gain {gain:+.2f} dB"
        conditioning = result.summary.get("conditioning")
        if conditioning:
            msg += (
                f" ({conditioning['input_conditioning']}: {conditioning['n_refiltered']} of "
                f"{conditioning['n_files']} re-filtered)"
            )
        if i == 0:
            msg += (
                f"; {elapsed:.1f} s for {self.n_files} files, about "
                f"{elapsed * self.n / 60:.1f} min for the {self.n} conditions"
            )
        print(msg, flush=True)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start


def grid_description(grid: Mapping[str, Any]) -> str:
    parts = []
    if grid.get("families"):
        phases = ["zero phase" if z else "one pass" for z in grid.get("zero_phase") or []]
        parts.append(
            f"{'/'.join(grid['families'])} x orders {grid.get('orders')} x cutoffs "
            f"{grid.get('cutoffs')} x {'/'.join(phases)}"
        )
    extra = [str(e["name"]) for e in grid.get("extra") or []]
    if extra:
        parts.append("plus " + ", ".join(extra))
    return "; ".join(parts)


def command_line() -> str:
    return shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])


def finish(
    output_dir: Path,
    results: Sequence[FilterResult],
    meta: Mapping[str, Any],
    loggers: Sequence[Any] = (),
) -> dict[str, Any]:
    """robustness.csv, summary.md, heatmaps (and W&B) from the scored conditions."""
    rows = robustness_rows(results)
    csv_path = write_robustness_csv(output_dir / "robustness.csv", rows)
    atomic_write_text(output_dir / "summary.md", summary_markdown(rows, meta))
    images = draw_heatmaps(output_dir, rows)
    log_to_wandb(loggers, rows, images)
    worst = min(rows, key=lambda r: r["snr_gain"])
    mean = _mean(rows, "snr_gain")
    if not math.isfinite(mean):
        log.warning("robustness: a condition has a non-finite SNR gain")
    return {
        "robustness_csv": str(csv_path),
        "worst_condition": worst["condition"],
        "worst_snr_gain": worst["snr_gain"],
        "mean_snr_gain": mean,
        "n_conditions": len(rows),
    }
