"""Wideband PESQ and STOI in the final test of evaluate.py and train.py, as a Lightning Callback.

The perceptual metrics run on the CPU, per file, through their reference implementations
(`metrics.perceptual_metrics_many`). They cost far more than the model on short files (about
25 ms of CPU per second of audio each, twice per file: model and cubic), so they are computed in
worker processes while the test loop goes on, and switched by `perceptual_metrics: true|false`.

The callback reads what the LightningModule's `test_step` returns (`{"hr", "model", "cubic"}`,
one utterance per batch), adds `pesq`, `stoi`, `cubic_pesq`, `cubic_stoi` to the module's per-file
rows (`test_rows`) before the module logs them, logs `test/pesq`, `test/cubic/pesq`, ... and, when
the test ends, puts the means (NaN skipped) and how many files each covers into `test_summary`.
A file where a metric is undefined (silence, shorter than PESQ's 1/4 s) gets NaN and a warning
naming it; the evaluation goes on.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
from collections.abc import Mapping
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Any

import lightning as L
import torch

from audio_superres.errors import ConfigError
from audio_superres.metrics import (
    ALL_METRIC_KEYS,
    PERCEPTUAL_KEYS,
    PERCEPTUAL_RATE,
    PerceptualScores,
    perceptual_metrics_many,
)

log = logging.getLogger(__name__)

__all__ = ["PerceptualMetrics", "default_workers", "perceptual_callbacks"]

WHO = ("model", "cubic")


def default_workers() -> int:
    """One worker process per usable CPU core, at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


def perceptual_callbacks(cfg: Mapping[str, Any]) -> list[L.Callback]:
    """`[PerceptualMetrics]` when the task config says `perceptual_metrics: true`, else `[]`."""
    enabled = cfg.get("perceptual_metrics", False)
    if not isinstance(enabled, bool):
        raise ConfigError(f"perceptual_metrics must be true or false, got {enabled!r}")
    if not enabled:
        return []
    workers = cfg.get("perceptual_workers")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 0):  # fmt: skip
        raise ConfigError(f"perceptual_workers must be null or an int >= 0, got {workers!r}")
    return [PerceptualMetrics(workers)]


def _single_thread_worker() -> None:
    """Worker processes: one torch thread each (the pool provides the parallelism)."""
    torch.set_num_threads(1)


def _row_key(who: str, key: str) -> str:
    return key if who == "model" else f"{who}_{key}"


class PerceptualMetrics(L.Callback):
    """PESQ-WB and STOI of the model and cubic on every test file, at 16 kHz.

    `workers`: processes computing them (None: `default_workers()`; 0: in this process, in
    step with the test loop).
    """

    def __init__(self, workers: int | None = None) -> None:
        super().__init__()
        if workers is not None and (not isinstance(workers, int) or workers < 0):
            raise ValueError(f"perceptual_workers must be null or an int >= 0, got {workers!r}")
        self.workers = default_workers() if workers is None else workers
        self._pool: Executor | None = None
        self._pending: list[tuple[str, dict[str, Any], Future | dict[str, PerceptualScores]]]
        self._pending = []
        self.summary: dict[str, Any] = {}

    # ---- lifecycle ------------------------------------------------------------------------
    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pending, self.summary = [], {}
        if self.workers > 0 and self._pool is None:
            # spawn: the parent holds torch's thread pools (and maybe CUDA), which fork breaks
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_single_thread_worker,
            )

    def _close_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._close_pool()

    # ---- per file -------------------------------------------------------------------------
    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not isinstance(outputs, Mapping) or not {"hr", "sr", "cubic"} <= set(outputs):
            raise TypeError(
                "PerceptualMetrics needs test_step to return module.eval_outputs (hr, sr, cubic), "
                f"got {type(outputs).__name__}"
            )
        hr = outputs["hr"].detach().cpu()
        if hr.ndim != 2 or hr.shape[0] != 1:
            raise ValueError(f"expected one utterance per test batch, got shape {tuple(hr.shape)}")
        name = str(batch["name"][0])
        row = next((r for r in reversed(pl_module.test_rows) if str(r["name"]) == name), None)
        if row is None:
            raise KeyError(f"{name}: no per-file row in the module's test_rows")
        signals = {
            who: outputs["sr" if who == "model" else who].detach().cpu()[0].double().numpy()
            for who in WHO
        }
        target = hr[0].double().numpy()
        rate = int(pl_module.sample_rate)
        if self._pool is None:
            result: Future | dict[str, PerceptualScores]
            result = perceptual_metrics_many(signals, target, rate)
        else:
            result = self._pool.submit(perceptual_metrics_many, signals, target, rate)
        self._pending.append((name, row, result))

    # ---- per test -------------------------------------------------------------------------
    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Collect every file's scores into its row, warn about NaNs, log the means."""
        values: dict[str, dict[str, list[float]]] = {
            w: {k: [] for k in PERCEPTUAL_KEYS} for w in WHO
        }
        undefined: dict[str, dict[str, list[str]]] = {w: {} for w in WHO}
        for name, row, result in self._pending:
            scores = result.result() if isinstance(result, Future) else result
            for who in WHO:
                for key in PERCEPTUAL_KEYS:
                    value = scores[who].values[key]
                    row[_row_key(who, key)] = value
                    values[who][key].append(value)
                    problem = scores[who].problems.get(key)
                    if problem is not None:
                        undefined[who].setdefault(key, []).append(name)
                        log.warning(
                            "%s: %s of the %s output undefined (%s); recorded as NaN, "
                            "left out of the average",
                            name,
                            key.upper(),
                            who,
                            problem,
                        )
            _group_metric_columns(row)
        self._pending = []
        means = {
            who: {key: _nanmean(v) for key, v in per_key.items()} for who, per_key in values.items()
        }
        n_files = len(values["model"]["pesq"])
        origin = int(pl_module.sample_rate)
        self.summary = {
            "means": means,
            "perceptual": {
                "sample_rate": PERCEPTUAL_RATE,
                "resampled_from": None if origin == PERCEPTUAL_RATE else origin,
                "pesq": "wideband (ITU-T P.862.2), pesq package via torchmetrics",
                "stoi": "Taal et al. 2011, pystoi package via torchmetrics",
                "n_files_total": n_files,
                "n_files": {
                    who: {k: sum(not math.isnan(x) for x in v) for k, v in per_key.items()}
                    for who, per_key in values.items()
                },
                "undefined": undefined,
            },
        }
        logs = {f"test/{k}": v for k, v in means["model"].items()}
        logs.update({f"test/cubic/{k}": v for k, v in means["cubic"].items()})
        pl_module.log_dict(logs, prog_bar=False, sync_dist=False)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """The module has written `test_summary` by now: add the means and their coverage."""
        self._close_pool()
        if not self.summary:
            return
        summary = pl_module.test_summary
        for who in WHO:
            summary[who] = {**summary[who], **self.summary["means"][who]}
        summary["perceptual"] = self.summary["perceptual"]


def _nanmean(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan


def _group_metric_columns(row: dict[str, Any]) -> None:
    """Reorder a per-file row in place: file columns, the model's metrics, then cubic's."""
    model = [k for k in ALL_METRIC_KEYS if k in row]
    cubic = [f"cubic_{k}" for k in ALL_METRIC_KEYS if f"cubic_{k}" in row]
    rest = [k for k in row if k not in model and k not in cubic]
    ordered = {k: row[k] for k in (*rest, *model, *cubic)}
    row.clear()
    row.update(ordered)
