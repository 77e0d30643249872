"""The value `train.py` returns: the best of `optimized_metric` over the run's validations.

Hydra sweepers (Optuna in `conf/hparams_search/`) optimise what the task function returns, so a
search over `val/lsd` must get the run's lowest validation LSD, not the SNR the checkpoint
callback monitors. `BestMetric` watches the metric at the end of every validation (the sanity
check excluded) and keeps its best value in the metric's own direction.
"""

from __future__ import annotations

import math

import lightning as L

from audio_superres.errors import ConfigError

__all__ = ["BestMetric", "metric_mode"]

HIGHER_IS_BETTER = ("snr", "sdr", "pesq", "stoi", "gain")
LOWER_IS_BETTER = ("lsd", "loss")


def metric_mode(metric: str) -> str:
    """`max` or `min` for a logged metric name (`val/snr` max, `val/lsd_hf` min, ...)."""
    name = metric.rsplit("/", 1)[-1].lower()
    if any(word in name for word in HIGHER_IS_BETTER):
        return "max"
    if any(word in name for word in LOWER_IS_BETTER):
        return "min"
    raise ConfigError(
        f"optimized_metric={metric!r}: cannot tell whether higher or lower is better; use a "
        f"metric named after one of {', '.join(HIGHER_IS_BETTER + LOWER_IS_BETTER)} "
        "(e.g. val/snr, val/lsd)"
    )


class BestMetric(L.Callback):
    """Keeps the best value of `metric` over the validations of a fit."""

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.mode = metric_mode(metric)
        self.best = math.nan
        self.seen: set[str] = set()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.seen = set(trainer.callback_metrics)
        value = trainer.callback_metrics.get(self.metric)
        if value is None:
            return
        value = float(value)
        if math.isnan(value):
            return
        better = value > self.best if self.mode == "max" else value < self.best
        if math.isnan(self.best) or better:
            self.best = value

    def result(self) -> float:
        """The best value; an error naming the logged metrics when `metric` never was one."""
        if math.isnan(self.best) and self.seen and self.metric not in self.seen:
            logged = ", ".join(sorted(k for k in self.seen if k.startswith("val/")))
            raise ConfigError(
                f"optimized_metric={self.metric!r} was never logged; validation logs: {logged}"
            )
        return self.best
