"""The one LightningModule: any model, the low-res input made on the fly, metrics vs cubic."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn

from audio_superres.checkpoint import instantiate_trusted
from audio_superres.dsp.cubic import CubicUpsample
from audio_superres.dsp.lowpass import LowpassSpec, as_lowpass_spec, crop_to_multiple, make_lowres
from audio_superres.errors import ConfigError
from audio_superres.inference import InferenceSettings, super_resolve
from audio_superres.metrics import METRIC_KEYS, SuperResMetrics, compute_metrics_many
from audio_superres.models.base import SuperResModel

DEFAULT_LOSS = {"_target_": "audio_superres.losses.RMSELoss"}
DEFAULT_OPTIM = {
    "lr": 3e-4,
    "betas": [0.9, 0.999],
    "weight_decay": 0.0,
    "fused": True,
    "scheduler": None,
}


def lowpass_to_dict(spec: LowpassSpec) -> dict[str, Any]:
    """Plain fields (tuples as lists), so hparams.yaml and checkpoints stay safe to load."""
    return {
        k: list(v) if isinstance(v, tuple) else v
        for k, v in ((k, getattr(spec, k)) for k in spec.__dataclass_fields__)
    }


class SuperResolutionModule(L.LightningModule):
    """Wraps a plain `nn.Module` (LR `(B, m)` -> HR `(B, m * ratio)`).

    The model and loss are given as configs (`_target_` dicts) and stored in the checkpoint, so
    `evaluate.py` and `upsample.py` rebuild exactly what was trained from the checkpoint alone.
    Every validation and test reports the model and the cubic baseline on the same inputs.
    """

    def __init__(
        self,
        model: Mapping[str, Any],
        ratio: int,
        sample_rate: int,
        lowpass: Mapping[str, Any] | str = "chebyshev",
        loss: Mapping[str, Any] | None = None,
        optim: Mapping[str, Any] | None = None,
        n_log_examples: int = 3,
        data_config: Mapping[str, Any] | None = None,
        compile: bool | str = False,
    ) -> None:
        super().__init__()
        self.ratio = int(ratio)
        self.sample_rate = int(sample_rate)
        self.lowpass = as_lowpass_spec(lowpass)
        loss = dict(loss or DEFAULT_LOSS)
        optim = {**DEFAULT_OPTIM, **dict(optim or {})}
        self.save_hyperparameters(
            {
                "model": dict(model),
                "ratio": self.ratio,
                "sample_rate": self.sample_rate,
                "lowpass": lowpass_to_dict(self.lowpass),
                "loss": loss,
                "optim": optim,
                "n_log_examples": n_log_examples,
                # what it was trained on: evaluate.py's default data (metadata only)
                "data_config": dict(data_config) if data_config else None,
            }
        )
        built = instantiate_trusted(model, "model")
        if not isinstance(built, SuperResModel):  # the interface chunked inference relies on
            raise ConfigError(
                f"model: {type(built).__module__}.{type(built).__qualname__} is not a "
                "SuperResModel (audio_superres.models.base): subclass it and declare "
                "chunk_alignment and context (docs/models.md)"
            )
        if built.ratio != self.ratio:
            raise ValueError(f"model ratio {built.ratio} differs from the task ratio {self.ratio}")
        self.model: SuperResModel = built
        self.loss_fn: nn.Module = instantiate_trusted(loss, "loss")
        self.cubic = CubicUpsample(self.ratio)
        self.metrics = nn.ModuleDict(
            {
                f"{stage}_{who}": SuperResMetrics(self.ratio)
                for stage in ("val", "test")
                for who in ("model", "cubic")
            }
        )
        self.n_log_examples = n_log_examples
        # a speed setting, not a hyperparameter: the checkpoint stores the plain model's weights
        if not isinstance(compile, (bool, str)) or compile == "":
            raise ValueError(
                f"compile must be true, false or a torch.compile backend name, got {compile!r}"
            )
        self.compile_model = compile
        object.__setattr__(self, "_compiled_model", None)  # not a submodule: same state_dict
        # chunked-inference settings of validation/test (not a hyperparameter: set by the task
        # from its `inference` node, the same for train.py, evaluate.py and upsample.py)
        self.inference = InferenceSettings()
        # the test filter's name when several are scored (test_lowpass): keys test/<name>/...
        self.test_filter: str | None = None
        self.test_rows: list[dict[str, Any]] = []
        self.test_examples: list[dict[str, Any]] = []
        self.test_summary: dict[str, Any] = {}
        # lowpass=random: training batch j on rank r draws its filters from (seed, j, r), so a
        # resumed run continues the stream; validation/test restart from the spec's seed.
        self._train_rng: np.random.Generator | None = None
        self._eval_rng: np.random.Generator | None = None

    # ---- the task -------------------------------------------------------------------------
    def make_inputs(
        self, hr: Tensor, rng: np.random.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Crop HR to a multiple of the ratio and make its low-res input (the one definition)."""
        hr = crop_to_multiple(hr, self.ratio)
        return hr, make_lowres(hr, self.ratio, self.lowpass, rng)

    def _rng(self, stage: str) -> np.random.Generator | None:
        """The generator for random filters: per training batch, reseeded for eval.

        In a fit, training batch j (counted over epochs by the trainer, restored on resume) on
        rank r draws from (run seed, j, r): the draws depend on the position, not on how many
        batches this process has seen, so a resumed run draws what an unbroken one would.
        """
        if self.lowpass.kind != "random":
            return None
        if stage == "train":
            if self._trainer is not None:
                batch = max(0, self.trainer.fit_loop.epoch_loop.total_batch_idx)
                base = int(torch.initial_seed()) % 2**63
                return np.random.default_rng([base, batch, self.global_rank])
            if self._train_rng is None:  # outside a Trainer: one stream per module
                self._train_rng = np.random.default_rng([int(self.lowpass.seed) % 2**63, 0])
            return self._train_rng
        if self._eval_rng is None:
            self._eval_rng = np.random.default_rng(self.lowpass.seed)
        return self._eval_rng

    def on_validation_epoch_start(self) -> None:
        self._eval_rng = None

    def set_lowpass(self, lowpass: str | LowpassSpec | Mapping[str, Any]) -> None:
        """Evaluate under another low-pass (the filter-mismatch study); training is unchanged."""
        self.lowpass = as_lowpass_spec(lowpass)
        self._eval_rng = None

    def forward(self, lr: Tensor) -> Tensor:
        return self.model(lr)

    def super_resolve(self, lr: Tensor) -> Tensor:
        """Super-resolve whole utterances `(B, m)` through the one chunked inference path
        (`inference.super_resolve` with `self.inference`): validation and test score what
        evaluate.py scores and upsample.py writes, and a long file never goes through the
        model in one piece."""
        out = super_resolve(self.model, lr, self.ratio, device=lr.device, **self.inference.kwargs())
        return out.to(lr.device)

    # ---- training -------------------------------------------------------------------------
    @property
    def train_model(self) -> nn.Module:
        """The model the training step runs: `torch.compile`d when `compile` is set.

        Training patches have one fixed shape, so one compilation serves the whole run;
        evaluation (whole files of every length) runs the plain model, which shares the weights.
        `compile: true` uses the default backend (inductor; needs a C compiler on CPU), a string
        names the backend.
        """
        if not self.compile_model:
            return self.model
        if self._compiled_model is None:
            backend = self.compile_model
            kwargs = {"backend": backend} if isinstance(backend, str) else {}
            object.__setattr__(self, "_compiled_model", torch.compile(self.model, **kwargs))
        return self._compiled_model

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        hr, lr = self.make_inputs(batch, self._rng("train"))
        loss = self.loss_fn(self.train_model(lr), hr)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False)
        return loss

    def configure_optimizers(self) -> Any:
        o = self.hparams["optim"]
        # fused: the whole update in one kernel per parameter; the per-op loop spent ~10% of a
        # small U-Net's CPU training step (python -m audio_superres.bench model)
        opt = torch.optim.Adam(
            self.parameters(),
            lr=o["lr"],
            betas=tuple(o["betas"]),
            weight_decay=o["weight_decay"],
            fused=bool(o.get("fused", True)) or None,
        )
        if not o.get("scheduler"):
            return opt
        if o["scheduler"] != "cosine":
            raise ValueError(f"optim.scheduler must be null or 'cosine', got {o['scheduler']!r}")
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(o.get("warmup_steps", 0))
        floor = float(o.get("min_lr_ratio", 0.0))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ---- evaluation -----------------------------------------------------------------------
    def _eval_step(
        self, batch: Mapping[str, Any], stage: str
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, dict[str, dict[str, Tensor]]]:
        """Model and cubic on one batch; every metric from one STFT per signal (shared HR)."""
        hr, lr = self.make_inputs(batch["hr"], self._rng(stage))
        pred = self.super_resolve(lr)
        cubic = self.cubic(lr)
        values = compute_metrics_many({"model": pred, "cubic": cubic}, hr, self.ratio)
        self.metrics[f"{stage}_model"].update_values(values["model"])
        self.metrics[f"{stage}_cubic"].update_values(values["cubic"])
        return hr, lr, cubic, pred, values

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, Any]:
        """Scores the batch; returns the signals (`eval_outputs`) for callbacks (media)."""
        hr, lr, cubic, pred, _ = self._eval_step(batch, "val")
        return eval_outputs(batch, hr, lr, cubic, pred)

    def log_prefix(self, stage: str) -> str:
        """Where a stage's keys go: `val`, `test`, or `test/<filter>` when several test filters
        are scored (`test_lowpass`), so every filter keeps its own keys in the logger."""
        if stage == "test" and self.test_filter:
            return f"test/{self.test_filter}"
        return stage

    def _log_summary(self, stage: str) -> dict[str, dict[str, float]]:
        out = {}
        for who in ("model", "cubic"):
            values = self.metrics[f"{stage}_{who}"].compute()
            self.metrics[f"{stage}_{who}"].reset()
            out[who] = {k: float(values[k]) for k in METRIC_KEYS}
        prefix = self.log_prefix(stage)
        logs = {f"{prefix}/{k}": v for k, v in out["model"].items()}
        logs.update({f"{prefix}/cubic/{k}": v for k, v in out["cubic"].items()})
        logs[f"{prefix}/snr_gain"] = out["model"]["snr"] - out["cubic"]["snr"]
        logs[f"{prefix}/lsd_gain"] = out["cubic"]["lsd"] - out["model"]["lsd"]
        self.log_dict(logs, prog_bar=False, sync_dist=False)
        return out

    def on_validation_epoch_end(self) -> None:
        self._log_summary("val")

    def on_test_epoch_start(self) -> None:
        self.test_rows, self.test_examples, self.test_summary = [], [], {}
        self._eval_rng = None

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, Any]:
        """Scores the batch and keeps its per-file row (and the first files as examples for
        metrics.json's WAVs); returns the signals (`eval_outputs`) for callbacks."""
        hr, lr, cubic, pred, values = self._eval_step(batch, "test")
        m, c = values["model"], values["cubic"]
        row: dict[str, Any] = {
            "name": batch["name"][0],
            "speaker": batch["speaker"][0],
            "seconds": hr.shape[-1] / self.sample_rate,
        }
        row.update({k: float(m[k][0]) for k in METRIC_KEYS})
        row.update({f"cubic_{k}": float(c[k][0]) for k in METRIC_KEYS})
        self.test_rows.append(row)
        outputs = eval_outputs(batch, hr, lr, cubic, pred)
        if batch_idx < self.n_log_examples:
            self.test_examples.append(first_example(outputs))
        return outputs

    def on_test_epoch_end(self) -> None:
        summary = self._log_summary("test")
        self.test_summary = {**summary, "n_files": len(self.test_rows)}


def eval_outputs(
    batch: Mapping[str, Any], hr: Tensor, lr: Tensor, cubic: Tensor, pred: Tensor
) -> dict[str, Any]:
    """What validation_step/test_step return: file names and speakers, and the HR, LR, cubic
    and SR signals `(B, n)` of the batch."""
    return {
        "name": list(batch["name"]),
        "speaker": list(batch["speaker"]),
        "hr": hr,
        "lr": lr,
        "cubic": cubic,
        "sr": pred,
    }


def first_example(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """The first file of `eval_outputs` as plain numpy arrays (keys name, speaker, hr, lr,
    cubic, sr): what report.results writes as WAVs and report.media logs."""
    example: dict[str, Any] = {"name": outputs["name"][0], "speaker": outputs["speaker"][0]}
    for key in ("hr", "lr", "cubic", "sr"):
        example[key] = outputs[key][0].detach().float().cpu().numpy()
    return example
