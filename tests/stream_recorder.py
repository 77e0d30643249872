"""A test-only Callback that records what a training run draws, one JSON line per event.

Added to a real `train.py` run with `+callbacks.record._target_=tests.stream_recorder.
RecordDraws +callbacks.record.out_dir=<dir>`: for every training batch the global step, the
rank, a digest of the high-res patches and the random filter specs drawn for it (from a copy
of the very generator the module hands to `make_lowres`); for every validation batch the
file names. Each rank writes its own file, `draws_rank<r>.jsonl`.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import lightning as L

from audio_superres.dsp.lowpass import draw_lowpass_specs


class RecordDraws(L.Callback):
    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.wrapped = False

    def _write(self, trainer: L.Trainer, record: dict[str, Any]) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"draws_rank{trainer.global_rank}.jsonl"
        with path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.wrapped:
            return
        self.wrapped = True
        make_inputs = pl_module.make_inputs

        def recording(hr, rng=None):
            if trainer.training and rng is not None:
                specs = draw_lowpass_specs(pl_module.lowpass, hr.shape[0], copy.deepcopy(rng))
                self._write(
                    trainer,
                    {
                        "kind": "filters",
                        "step": trainer.global_step,
                        "specs": [repr(dataclasses.astuple(s)) for s in specs],
                    },
                )
            return make_inputs(hr, rng)

        pl_module.make_inputs = recording

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        digest = hashlib.sha256(batch.detach().cpu().numpy().tobytes()).hexdigest()
        record = {"kind": "train", "step": trainer.global_step, "epoch": trainer.current_epoch}
        self._write(trainer, {**record, "rank": trainer.global_rank, "patches": digest})

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if not trainer.sanity_checking:
            self._write(trainer, {"kind": "val", "names": list(batch["name"])})


def read_draws(out_dir: Path, rank: int = 0) -> list[dict[str, Any]]:
    path = Path(out_dir) / f"draws_rank{rank}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line]
