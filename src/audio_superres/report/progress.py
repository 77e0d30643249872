"""The console progress bar of training: steps of the step budget, not epochs.

Training here is budgeted in optimiser steps (`trainer.max_steps`, with `max_epochs: -1`; an
epoch is only `data.patches_per_epoch` random patches), so Lightning's own bars are misleading:
its Rich bar reads `Epoch 1/-2` and restarts at every epoch, its tqdm bar counts the batches of
one epoch. `StepProgressBar` shows one bar for the whole fit, `Steps: 120/420`, counting the
steps `trainer.max_steps` counts (generator steps under the adversarial objective), from the
resumed step on a resumed run, with the logged values but not Lightning's `v_num` (the
logger's run id). Without a step budget (`max_steps: -1`, epochs set) it shows
`Epoch 2/3` (1-based) with the batches of that epoch, as a person would count them.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import convert_inf

__all__ = ["StepProgressBar", "train_description"]


def train_description(trainer: L.Trainer) -> str:
    """What the training bar is labelled with: `Steps`, or `Epoch e/E` (1-based) or `Epoch e`."""
    if _step_budget(trainer):
        return "Steps"
    epoch = trainer.current_epoch + 1
    max_epochs = trainer.max_epochs
    return f"Epoch {epoch}/{max_epochs}" if max_epochs and max_epochs > 0 else f"Epoch {epoch}"


def _step_budget(trainer: L.Trainer) -> int:
    max_steps = trainer.max_steps
    return int(max_steps) if max_steps is not None and max_steps > 0 else 0


class StepProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar, counting training steps of `trainer.max_steps` (module docstring)."""

    def __init__(self, refresh_rate: int = 1, process_position: int = 0, leave: bool = False):
        super().__init__(refresh_rate, process_position, leave)
        self._started_fit = False

    def on_train_start(self, *args: Any) -> None:
        super().on_train_start(*args)
        self._started_fit = False

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        """The logged values, without Lightning's `v_num` (a logger's run id, e.g. `v_num=49c0`)."""
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics

    def on_train_epoch_start(self, trainer: L.Trainer, *args: Any) -> None:
        budget = _step_budget(trainer)
        if not budget:  # Lightning's own, labelled `Epoch e/E` from 1
            bar = self.train_progress_bar
            bar.reset(convert_inf(self.total_train_batches))
            bar.initial = 0
            bar.set_description(train_description(trainer))
            return
        if self._started_fit:
            return  # one bar for the whole budget: epochs are only patch draws
        self._started_fit = True
        bar = self.train_progress_bar
        bar.reset(total=budget)
        bar.unit = "step"
        bar.initial = bar.n = trainer.global_step  # a resumed run starts where it stopped
        bar.set_description(train_description(trainer))
        bar.refresh()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:
        if not _step_budget(trainer):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
            return
        bar = self.train_progress_bar
        step = trainer.global_step
        if self._should_update(step, bar.total) and not bar.disable:
            bar.n = step
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
            bar.refresh()
