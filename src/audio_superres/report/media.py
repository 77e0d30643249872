"""W&B media of validation and test, as a Lightning callback (the module holds no W&B code).

`MediaLogger` keeps the first `n_examples` files of every validation and test (from what
`validation_step` / `test_step` return: `module.eval_outputs`) and logs, per file, the HR / LR /
cubic / SR audio and one spectrogram image of the four; at the end of a test it also logs the
per-file table (`module.test_rows`). Keys follow the module's `log_prefix`: `val/audio_0/HR`,
`test/spectrogram_0`, `test/per_file`, or `test/<filter>/...` when several test filters are
scored. Without a W&B logger it does nothing.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import lightning as L
import numpy as np
from lightning.pytorch.loggers import WandbLogger

from audio_superres.module import first_example

__all__ = ["MediaLogger", "media_payload"]


def wandb_logger(trainer: L.Trainer) -> WandbLogger | None:
    """The trainer's W&B logger, if it has one."""
    return next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)


def media_payload(
    prefix: str, examples: list[dict[str, Any]], sample_rate: int, ratio: int
) -> dict[str, Any]:
    """`{prefix}/audio_<i>/<HR|LR|cubic|SR>` audio and `{prefix}/spectrogram_<i>` images."""
    import wandb
    from PIL import Image

    from audio_superres.report.plots import figure_to_png, spectrogram_figure

    rates = {
        "HR": sample_rate,
        "LR": round(sample_rate / ratio),
        "cubic": sample_rate,
        "SR": sample_rate,
    }
    payload: dict[str, Any] = {}
    for i, ex in enumerate(examples):
        sig = {"HR": ex["hr"], "LR": ex["lr"], "cubic": ex["cubic"], "SR": ex["sr"]}
        for name, x in sig.items():
            payload[f"{prefix}/audio_{i}/{name}"] = wandb.Audio(
                np.clip(x, -1, 1), sample_rate=rates[name], caption=f"{ex['name']} {name}"
            )
        png = figure_to_png(spectrogram_figure(sig, rates, title=ex["name"]))
        payload[f"{prefix}/spectrogram_{i}"] = wandb.Image(
            Image.open(io.BytesIO(png)), caption=ex["name"]
        )
    return payload


class MediaLogger(L.Callback):
    """Logs audio + spectrograms of the first `n_examples` files of each validation and test,
    and the per-file table of each test, to W&B (conf/callbacks/default.yaml)."""

    def __init__(self, n_examples: int = 3) -> None:
        if isinstance(n_examples, bool) or not isinstance(n_examples, int) or n_examples < 0:
            raise ValueError(f"n_examples must be an integer >= 0, got {n_examples!r}")
        self.n_examples = n_examples
        self.examples: list[dict[str, Any]] = []

    def _keep(self, trainer: L.Trainer, outputs: Any, batch_idx: int) -> None:
        if (
            batch_idx < self.n_examples
            and isinstance(outputs, Mapping)
            and wandb_logger(trainer) is not None
        ):
            self.examples.append(first_example(outputs))

    def _log(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        examples, self.examples = self.examples, []
        logger = wandb_logger(trainer)
        if logger is None or not examples:
            return
        payload = media_payload(
            pl_module.log_prefix(stage), examples, pl_module.sample_rate, pl_module.ratio
        )
        logger.log_metrics(payload, step=trainer.global_step)

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.examples = []

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not trainer.sanity_checking:
            self._keep(trainer, outputs, batch_idx)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log(trainer, pl_module, "val")

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.examples = []

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._keep(trainer, outputs, batch_idx)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log(trainer, pl_module, "test")
        logger = wandb_logger(trainer)
        rows = getattr(pl_module, "test_rows", None)
        if logger is not None and rows:
            columns = list(rows[0])
            logger.log_table(
                f"{pl_module.log_prefix('test')}/per_file",
                columns=columns,
                data=[[r[c] for c in columns] for r in rows],
            )
