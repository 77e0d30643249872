"""The one LightningModule: any model, the low-res input made on the fly, metrics vs cubic."""

from __future__ import annotations

import io
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
from audio_superres.metrics import SuperResMetrics, compute_metrics_many

METRIC_KEYS = ("snr", "lsd", "lsd_hf", "lsd_paper")
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
        self.model: nn.Module = instantiate_trusted(model, "model")
        model_ratio = getattr(self.model, "ratio", self.ratio)
        if model_ratio != self.ratio:
            raise ValueError(f"model ratio {model_ratio} differs from the task ratio {self.ratio}")
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
        # chunked-inference settings for super_resolve (not a hyperparameter: set by evaluate.py)
        self.inference: dict[str, Any] | None = None
        self._examples: list[dict[str, Any]] = []
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
        """Super-resolve whole utterances `(B, m)`.

        With `self.inference` set (keyword arguments of `audio_superres.inference.super_resolve`,
        as evaluate.py does) this is the chunked inference path users get from upsample.py.
        """
        if self.inference is None:
            return self.model(lr)
        from audio_superres.inference import super_resolve

        return super_resolve(self.model, lr, self.ratio, device=lr.device, **self.inference)

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

    def _keep_example(self, batch: Mapping[str, Any], hr, lr, cubic, pred) -> dict[str, Any]:
        as_np = lambda t: t[0].detach().float().cpu().numpy()  # noqa: E731
        return {
            "name": batch["name"][0],
            "speaker": batch["speaker"][0],
            "hr": as_np(hr),
            "lr": as_np(lr),
            "cubic": as_np(cubic),
            "sr": as_np(pred),
        }

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        hr, lr, cubic, pred, _ = self._eval_step(batch, "val")
        if batch_idx < self.n_log_examples and not self.trainer.sanity_checking:
            self._examples.append(self._keep_example(batch, hr, lr, cubic, pred))

    def _log_summary(self, stage: str) -> dict[str, dict[str, float]]:
        out = {}
        for who in ("model", "cubic"):
            values = self.metrics[f"{stage}_{who}"].compute()
            self.metrics[f"{stage}_{who}"].reset()
            out[who] = {k: float(values[k]) for k in METRIC_KEYS}
        logs = {f"{stage}/{k}": v for k, v in out["model"].items()}
        logs.update({f"{stage}/cubic/{k}": v for k, v in out["cubic"].items()})
        logs[f"{stage}/snr_gain"] = out["model"]["snr"] - out["cubic"]["snr"]
        logs[f"{stage}/lsd_gain"] = out["cubic"]["lsd"] - out["model"]["lsd"]
        self.log_dict(logs, prog_bar=False, sync_dist=False)
        return out

    def on_validation_epoch_end(self) -> None:
        self._log_summary("val")
        if self._examples:
            self._log_media("val", self._examples)
        self._examples = []

    def on_test_epoch_start(self) -> None:
        self.test_rows, self.test_examples, self.test_summary = [], [], {}
        self._eval_rng = None

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
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
        if batch_idx < self.n_log_examples:
            self.test_examples.append(self._keep_example(batch, hr, lr, cubic, pred))

    def on_test_epoch_end(self) -> None:
        summary = self._log_summary("test")
        self.test_summary = {**summary, "n_files": len(self.test_rows)}
        if self.test_examples:
            self._log_media("test", self.test_examples)
        logger = self._wandb_logger()
        if logger is not None and self.test_rows:
            columns = list(self.test_rows[0])
            logger.log_table(
                "test/per_file",
                columns=columns,
                data=[[r[c] for c in columns] for r in self.test_rows],
            )

    # ---- media ----------------------------------------------------------------------------
    def _wandb_logger(self) -> Any:
        from lightning.pytorch.loggers import WandbLogger

        for logger in self.loggers:
            if isinstance(logger, WandbLogger):
                return logger
        return None

    def _log_media(self, stage: str, examples: list[dict[str, Any]]) -> None:
        """HR / LR / cubic / SR audio and one spectrogram image of the four, per example."""
        logger = self._wandb_logger()
        if logger is None:
            return
        import wandb
        from PIL import Image

        from audio_superres.report.plots import figure_to_png, spectrogram_figure

        lr_rate = round(self.sample_rate / self.ratio)
        rates = {
            "HR": self.sample_rate,
            "LR": lr_rate,
            "cubic": self.sample_rate,
            "SR": self.sample_rate,
        }
        payload: dict[str, Any] = {}
        for i, ex in enumerate(examples):
            sig = {"HR": ex["hr"], "LR": ex["lr"], "cubic": ex["cubic"], "SR": ex["sr"]}
            for name, x in sig.items():
                payload[f"{stage}/audio_{i}/{name}"] = wandb.Audio(
                    np.clip(x, -1, 1), sample_rate=rates[name], caption=f"{ex['name']} {name}"
                )
            png = figure_to_png(spectrogram_figure(sig, rates, title=ex["name"]))
            payload[f"{stage}/spectrogram_{i}"] = wandb.Image(
                Image.open(io.BytesIO(png)), caption=ex["name"]
            )
        logger.log_metrics(payload, step=self.global_step)
