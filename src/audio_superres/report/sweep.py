"""Summaries of a Hydra multirun: `summary.csv`, `summary.md`, heatmaps, and W&B.

Runs by itself at the end of every multirun (`SweepSummaryCallback`, registered in
conf/hydra/default.yaml) and again on demand over any finished sweep directory:

    python -m audio_superres.report.sweep outputs/train/multiruns/2025-01-01_12-00-00

Each job directory (`<sweep dir>/<n>/`) contributes its `status.json` (written by train.py),
`metrics.json` and `mismatch.csv`; a job that failed, or died without results, is listed as
such and the other jobs are still aggregated. The heatmaps put the train filter (plus any other
swept setting except the seed) on the rows and the test filter on the columns; cells are means
over seeds.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import sys
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from audio_superres.metrics import ALL_METRIC_KEYS, METRIC_LABELS
from audio_superres.utils import atomic_write_text, atomic_write_with

log = logging.getLogger(__name__)

SUMMARY_COLUMNS = (
    "job",
    "status",
    "row",
    "train_lowpass",
    "test_lowpass",
    "seed",
    "ratio",
    "n_files",
    "snr_gain",
    "lsd_gain",
    # every metric of metrics.ALL_METRIC_KEYS (blank where a job did not compute it)
    *(f"{who}_{k}" for k in ALL_METRIC_KEYS for who in ("model", "cubic")),
    "best_val_snr",
    "optimized_metric",
    "best",
    "overrides",
    "error",
)
HEATMAPS = {
    "heatmap_snr_gain.png": ("snr_gain", "SNR gain over cubic (dB), higher is better", "RdYlGn"),
    "heatmap_lsd.png": ("model_lsd", "model LSD, lower is better", "viridis_r"),
}


# ---- reading job directories --------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        log.warning("%s: unreadable (%s); the job is marked incomplete", path, err)
        return None


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        log.warning("%s: unreadable (%s)", path, err)
        return None


def job_dirs(sweep_dir: Path) -> list[Path]:
    """Job directories of a sweep (those with Hydra's `.hydra/overrides.yaml`), by job number."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"{sweep_dir}: sweep directory not found")
    found = [p.parent.parent for p in sweep_dir.glob("**/.hydra/overrides.yaml")]
    key = lambda p: (len(p.parts), int(p.name) if p.name.isdigit() else math.inf, str(p))  # noqa: E731
    return sorted(found, key=key)


def _override_dict(overrides: Sequence[str]) -> dict[str, str]:
    out = {}
    for o in overrides:
        if "=" in o:
            k, v = o.split("=", 1)
            out[k.lstrip("+~")] = v
    return out


def lowpass_choice(job_dir: Path) -> str:
    """The job's `lowpass` config name as Hydra chose it (`.hydra/hydra.yaml`), e.g. `robust`,
    whose filter kind (`random`) would not tell it from `lowpass=random`; "" when unknown."""
    hydra_cfg = _read_yaml(job_dir / ".hydra" / "hydra.yaml") or {}
    choices = ((hydra_cfg.get("hydra") or {}).get("runtime") or {}).get("choices") or {}
    return str(choices.get("lowpass") or "")


def read_job(job_dir: Path, sweep_dir: Path) -> list[dict[str, Any]]:
    """Summary rows of one job: one per test filter, or one row saying why there are none."""
    overrides = [str(o) for o in (_read_yaml(job_dir / ".hydra" / "overrides.yaml") or [])]
    config = _read_yaml(job_dir / ".hydra" / "config.yaml") or {}
    status_file = _read_json(job_dir / "status.json")
    metrics = _read_json(job_dir / "metrics.json")
    lowpass_cfg = config.get("lowpass") or {}
    base: dict[str, Any] = {
        "job": job_dir.relative_to(sweep_dir).as_posix(),
        "train_lowpass": lowpass_choice(job_dir)
        or (metrics or {}).get("lowpass")
        or lowpass_cfg.get("kind", ""),
        "seed": config.get("seed", ""),
        "ratio": (metrics or {}).get("ratio", config.get("ratio", "")),
        "best_val_snr": (metrics or {}).get("best_val_snr", ""),
        # what train.py returned (the value an hparams search optimises), from status.json
        "optimized_metric": (status_file or {}).get("optimized_metric", ""),
        "best": (status_file or {}).get("best", ""),
        "overrides": " ".join(overrides),
        "error": "",
        "_overrides": _override_dict(overrides),
    }
    status = (status_file or {}).get("status")
    if status == "failed":
        return [{**base, "status": "failed", "error": status_file.get("error", "")}]
    if metrics is None and status == "completed" and config.get("test_after_fit") is False:
        # validated only (an hparams search trial): its score is `best`, there is no test
        return [{**base, "status": "completed", "test_lowpass": ""}]
    if metrics is None:
        # "running" left behind, or nothing at all: the job died or has not finished
        why = "no metrics.json" + (f" (status: {status})" if status else "")
        return [{**base, "status": "incomplete", "error": why}]
    by_lowpass = metrics.get("by_lowpass") or {
        metrics.get("test_lowpass") or metrics.get("lowpass", ""): metrics
    }
    rows = []
    for name, m in by_lowpass.items():
        model, cubic = m["model"], m["cubic"]
        rows.append(
            {
                **base,
                "status": "completed",
                "test_lowpass": name,
                "n_files": m.get("n_files", metrics.get("n_files", "")),
                "snr_gain": model["snr"] - cubic["snr"],
                "lsd_gain": cubic["lsd"] - model["lsd"],
                **{f"model_{k}": model.get(k, "") for k in ALL_METRIC_KEYS},
                **{f"cubic_{k}": cubic.get(k, "") for k in ALL_METRIC_KEYS},
            }
        )
    return rows


def collect(sweep_dir: Path) -> list[dict[str, Any]]:
    """Every job's rows, each with a `row` label: the train filter plus the other swept
    settings (except seed), so grids over ratio or depth get one heatmap row per setting."""
    sweep_dir = Path(sweep_dir)
    rows = [r for d in job_dirs(sweep_dir) for r in read_job(d, sweep_dir)]
    varying = _varying_keys(rows, exclude=("seed", "lowpass"))
    for r in rows:
        extra = " ".join(f"{k}={r['_overrides'].get(k, '')}" for k in varying)
        r["row"] = " ".join(p for p in (str(r["train_lowpass"]), extra) if p)
    return rows


def _varying_keys(rows: Sequence[Mapping[str, Any]], exclude: Sequence[str]) -> list[str]:
    """Override keys whose value differs between jobs (a key missing in a job counts)."""
    jobs = {r["job"]: r["_overrides"] for r in rows}
    keys = {k for o in jobs.values() for k in o}
    return sorted(
        k for k in keys if k not in exclude and len({o.get(k) for o in jobs.values()}) > 1
    )


# ---- tables -----------------------------------------------------------------------------------


def _fmt(v: Any, digits: int = 3) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.{digits}f}"
    return str(v)


def pivot(
    rows: Sequence[Mapping[str, Any]], value: str
) -> tuple[list[str], list[str], dict[tuple[str, str], tuple[float, float, int]]]:
    """(row labels, test filters, {(row, test): (mean, std, n)}) over completed rows."""
    cells: dict[tuple[str, str], list[float]] = defaultdict(list)
    row_labels: list[str] = []
    cols: list[str] = []
    for r in rows:
        if r["status"] != "completed" or r.get(value) in (None, ""):
            continue  # failed, or validated only (no test metrics)
        if r["row"] not in row_labels:
            row_labels.append(r["row"])
        if r.get(value, "") == "":
            continue  # a metric this job did not compute (e.g. PESQ switched off)
        if r["test_lowpass"] not in cols:
            cols.append(r["test_lowpass"])
        cells[(r["row"], r["test_lowpass"])].append(float(r[value]))
    out = {}
    for key, vals in cells.items():
        mean = sum(vals) / len(vals)
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals)) if len(vals) > 1 else 0.0
        out[key] = (mean, std, len(vals))
    return row_labels, cols, out


def write_summary_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(
        buf, fieldnames=list(SUMMARY_COLUMNS), extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write_text(path, buf.getvalue())
    return path


def summary_markdown(sweep_dir: Path, rows: Sequence[Mapping[str, Any]]) -> str:
    """Counts, the train x test pivots (mean over seeds, +- std) and every job's rows."""
    jobs: dict[str, str] = {}
    for r in rows:
        jobs.setdefault(r["job"], r["status"])
    counts = defaultdict(int)
    for s in jobs.values():
        counts[s] += 1
    lines = [
        f"# Sweep summary: {Path(sweep_dir).name}",
        "",
        f"{len(jobs)} jobs: "
        + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        + f". Directory: `{sweep_dir}`",
        "",
    ]
    pivots = [
        ("snr_gain", "SNR gain over cubic (dB; higher is better)"),
        ("model_snr", "Model SNR (dB)"),
        ("model_lsd", "Model LSD (lower is better)"),
        ("cubic_lsd", "Cubic LSD"),
    ]
    pivots += [
        (f"model_{k}", f"Model {METRIC_LABELS[k]}")
        for k in ALL_METRIC_KEYS
        if k not in ("snr", "lsd", "lsd_paper")
    ]
    for value, title in pivots:
        row_labels, cols, cells = pivot(rows, value)
        if not cells:
            continue
        lines += [f"## {title}: rows = train filter, columns = test filter", ""]
        lines.append("| train \\ test | " + " | ".join(cols) + " |")
        lines.append("|---|" + "---:|" * len(cols))
        for rl in row_labels:
            vals = []
            for c in cols:
                if (rl, c) not in cells:
                    vals.append("")
                    continue
                mean, std, n = cells[(rl, c)]
                vals.append(f"{mean:.2f}" if n == 1 else f"{mean:.2f} ± {std:.2f} (n={n})")
            lines.append(f"| {rl} | " + " | ".join(vals) + " |")
        lines.append("")
    lines += ["## Jobs (overrides: those that differ between jobs)", ""]
    cols = ["job", "status", "train_lowpass", "test_lowpass", "seed", "model_snr", "cubic_snr",
            "snr_gain", "model_lsd", "cubic_lsd", "best", "overrides", "error"]  # fmt: skip
    extra = [f"model_{k}" for k in ALL_METRIC_KEYS if k not in ("snr", "lsd", "lsd_paper")]
    cols[10:10] = [c for c in extra if any(r.get(c, "") != "" for r in rows)]
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "---|" * len(cols))
    varying = _varying_keys(rows, exclude=())
    for r in rows:
        r = {**r, "overrides": " ".join(f"{k}={r['_overrides'].get(k, '')}" for k in varying)}
        cells_txt = [_fmt(r.get(c, "")).replace("|", "\\|").replace("\n", " ") for c in cols]
        lines.append("| " + " | ".join(cells_txt) + " |")
    if counts.get("failed"):
        lines += ["", "Failed jobs: see `status.json` (error and traceback) in each job directory."]
    return "\n".join(lines) + "\n"


def draw_heatmaps(sweep_dir: Path, rows: Sequence[Mapping[str, Any]]) -> list[Path]:
    """heatmap_snr_gain.png and heatmap_lsd.png (train x test, annotated); none without data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    written = []
    for name, (value, title, cmap) in HEATMAPS.items():
        row_labels, cols, cells = pivot(rows, value)
        if not cells:
            continue
        grid = np.full((len(row_labels), len(cols)), np.nan)
        for (rl, c), (mean, _, _) in cells.items():
            grid[row_labels.index(rl), cols.index(c)] = mean
        fig, ax = plt.subplots(
            figsize=(1.6 + 1.3 * len(cols), 1.4 + 0.6 * len(row_labels)), layout="constrained"
        )
        im = ax.imshow(grid, cmap=cmap, aspect="auto")
        ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right")
        ax.set_yticks(range(len(row_labels)), row_labels)
        ax.set_xlabel("test filter")
        ax.set_ylabel("train filter")
        ax.set_title(title, fontsize=10)
        finite = grid[np.isfinite(grid)]
        mid = (finite.min() + finite.max()) / 2 if finite.size else 0
        for i in range(grid.shape[0]):
            for j in range(grid.shape[1]):
                if np.isfinite(grid[i, j]):
                    dark = (grid[i, j] < mid) == (cmap == "RdYlGn")
                    ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=9,
                            color="white" if dark and cmap == "viridis_r" else "black")  # fmt: skip
        fig.colorbar(im, ax=ax)
        path = Path(sweep_dir) / name
        atomic_write_with(path, lambda p, fig=fig: fig.savefig(p, dpi=120))
        plt.close(fig)
        written.append(path)
    return written


# ---- the whole summary ------------------------------------------------------------------------


def summarize(sweep_dir: str | Path) -> dict[str, Any]:
    """Write summary.csv, summary.md and the heatmaps into `sweep_dir`; return what was found."""
    sweep_dir = Path(sweep_dir)
    rows = collect(sweep_dir)
    csv_path = write_summary_csv(sweep_dir / "summary.csv", rows)
    md_path = sweep_dir / "summary.md"
    atomic_write_text(md_path, summary_markdown(sweep_dir, rows))
    images = draw_heatmaps(sweep_dir, rows)
    status: dict[str, str] = {}
    for r in rows:
        status.setdefault(r["job"], r["status"])
    return {
        "rows": rows,
        "csv": csv_path,
        "markdown": md_path,
        "images": images,
        "jobs": status,
        "failed": sorted(j for j, s in status.items() if s != "completed"),
    }


def log_to_wandb(summary: Mapping[str, Any], project: str, group: str, save_dir: Path) -> None:
    """The summary table and heatmaps as one W&B run in the sweep group (offline without a key)."""
    import wandb

    from audio_superres.wandb_setup import wandb_mode

    run = wandb.init(
        project=project,
        group=group,
        job_type="sweep_summary",
        name=f"{group}-summary",
        dir=str(save_dir),
        mode=wandb_mode() or None,
        reinit="finish_previous",
    )
    try:
        cols = list(SUMMARY_COLUMNS)
        table = wandb.Table(
            columns=cols, data=[[_fmt(r.get(c, ""), 6) for c in cols] for r in summary["rows"]]
        )
        payload: dict[str, Any] = {"sweep/summary": table}
        for path in summary["images"]:
            payload[f"sweep/{Path(path).stem}"] = wandb.Image(str(path))
        run.log(payload)
    finally:
        run.finish()


try:
    from hydra.experimental.callback import Callback as _HydraCallback
except ImportError:  # pragma: no cover - hydra is a dependency
    _HydraCallback = object  # type: ignore[assignment,misc]


class SweepSummaryCallback(_HydraCallback):
    """Hydra callback: summarise the sweep when the multirun ends.

    Logs to W&B when the sweep's config uses the wandb logger (all jobs share the group
    `<task>-<sweep dir name>`). Jobs that did not complete are named on stderr (Hydra turns a
    callback's exception into a warning, so the summary is where failures are reported).
    """

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        from audio_superres.runs import sweep_group

        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():
            return
        summary = summarize(sweep_dir)
        print(summary["markdown"].read_text())
        print(f"Sweep summary: {summary['markdown']} {summary['csv']}")
        wandb_cfg = (config.get("logger") or {}).get("wandb")
        if wandb_cfg is not None:
            group = wandb_cfg.get("group") or sweep_group(str(config.task_name), sweep_dir)
            log_to_wandb(summary, str(wandb_cfg.get("project")), group, sweep_dir)
        if summary["failed"]:
            print(
                f"SWEEP INCOMPLETE: {len(summary['failed'])} of {len(summary['jobs'])} jobs did "
                f"not complete (job {', '.join(summary['failed'])}); see {summary['markdown']}",
                file=sys.stderr,
            )
            # after the summary: the multirun exits non-zero so scripts and CI see the failure
            # (SystemExit is not an Exception, so Hydra's callback guard lets it through)
            raise SystemExit(1)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m audio_superres.report.sweep DIR [DIR ...]`: (re)aggregate finished sweeps."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dirs", nargs="+", type=Path, help="multirun directories")
    args = parser.parse_args(argv)
    status = 0
    for d in args.sweep_dirs:
        try:
            summary = summarize(d)
        except FileNotFoundError as err:
            print(err, file=sys.stderr)
            status = 1
            continue
        print(summary["markdown"].read_text())
        print(f"wrote {summary['csv']}, {summary['markdown']}, "
              + ", ".join(str(p) for p in summary["images"]))  # fmt: skip
    return status


if __name__ == "__main__":
    sys.exit(main())
