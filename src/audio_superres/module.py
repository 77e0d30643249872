"""The one LightningModule: any model, the low-res input made on the fly, metrics vs cubic."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from torch import Tensor, nn

from audio_superres.checkpoint import instantiate_trusted
from audio_superres.dsp.bandwidth import InputCheck, condition_lowres, conditioning_mode
from audio_superres.dsp.cubic import CubicUpsample
from audio_superres.dsp.lowpass import (
    LowpassSpec,
    as_lowpass_spec,
    check_sample_rate,
    crop_to_multiple,
    lowpass_to_dict,
    make_lowres,
)
from audio_superres.errors import ConfigError
from audio_superres.inference import InferenceSettings, super_resolve
from audio_superres.losses import Spectrum, loss_components
from audio_superres.metrics import METRIC_KEYS, SuperResMetrics, compute_metrics_many
from audio_superres.models.base import SuperResModel
from audio_superres.objectives import AdversarialObjective, TrainingObjective

if TYPE_CHECKING:
    from audio_superres.resolver import SuperResolver

DEFAULT_OBJECTIVE = {
    "_target_": "audio_superres.objectives.RegressionObjective",
    "loss": {"_target_": "audio_superres.losses.RMSELoss"},
}
DEFAULT_OPTIMIZER = {
    "_target_": "torch.optim.Adam",
    "_partial_": True,
    "lr": 3e-4,
    "betas": [0.9, 0.999],
    "weight_decay": 0.0,
    "fused": True,
}
SCHEDULER_KEYS = ("interval", "frequency")  # Lightning's, not the scheduler class's


def build_objective(cfg: Mapping[str, Any]) -> TrainingObjective:
    """An objective from its config; only `audio_superres` objective classes are accepted."""
    target = str(cfg.get("_target_", ""))
    if not target.startswith("audio_superres."):
        raise ValueError(f"objective._target_ must be an audio_superres objective, got {target!r}")
    objective = instantiate(dict(cfg), _recursive_=False, _convert_="all")
    if not isinstance(objective, TrainingObjective):
        raise ValueError(f"objective._target_ {target} is not an audio_superres TrainingObjective")
    return objective


def build_optimizer(cfg: Mapping[str, Any], params: Any) -> torch.optim.Optimizer:
    """A `_partial_` torch.optim config called with `params`; `fused: true` falls back to the
    default implementation where the parameters' device has no fused kernel."""
    cfg = dict(cfg)
    make = instantiate(cfg, _convert_="all")
    params = list(params)
    try:
        return make(params)
    except (RuntimeError, TypeError) as err:
        if not cfg.get("fused") or "fused" not in str(err):
            raise
        return instantiate({**cfg, "fused": None}, _convert_="all")(params)


def build_scheduler(cfg: Mapping[str, Any] | None, optimizer: torch.optim.Optimizer) -> dict | None:
    """Lightning's scheduler dict from a `_partial_` config plus `interval`/`frequency`."""
    if not cfg:
        return None
    cfg = dict(cfg)
    if "_target_" not in cfg:
        raise ValueError(
            f"scheduler {cfg} has no _target_: choose one (scheduler=cosine|exponential|...) "
            "before setting its fields"
        )
    options = {k: cfg.pop(k) for k in SCHEDULER_KEYS if k in cfg}
    interval = options.get("interval", "step")
    if interval not in ("step", "epoch"):
        raise ValueError(f"scheduler.interval must be step or epoch, got {interval!r}")
    scheduler = instantiate(cfg, _convert_="all")(optimizer)
    frequency = int(options.get("frequency", 1))
    return {"scheduler": scheduler, "interval": interval, "frequency": frequency}


def check_spectrum_sizes(model: nn.Module, objective: TrainingObjective) -> None:
    """`objective.generator_spectrum` needs a spectral generator, and losses that analyse with
    its STFT sizes: the spectra are compared bin by bin and frame by frame."""
    if not hasattr(model, "forward_with_spectrum"):
        raise ConfigError(
            f"objective.generator_spectrum=true: model {type(model).__qualname__} has no "
            "forward_with_spectrum (a spectral generator such as model=apbwe has)"
        )
    model_stft = getattr(model, "stft", None)
    if model_stft is None:
        return
    sizes = (model_stft.n_fft, model_stft.hop_length, model_stft.win_length)
    for name, stft in objective.spectrum_stfts().items():
        theirs = (stft.n_fft, stft.hop_length, stft.win_length)
        if theirs != sizes:
            raise ConfigError(
                f"objective.generator_spectrum=true: the loss {name} analyses with "
                f"n_fft/hop/window {theirs}, the model synthesises with {sizes}; set the "
                "loss's n_fft, hop_length and win_length to the model's"
            )


class SuperResolutionModule(L.LightningModule):
    """Wraps a plain `nn.Module` (LR `(B, m)` -> HR `(B, m * ratio)`) with its training.

    Everything comes as configs (`_target_` dicts, `conf/train.yaml`'s `module` node): the
    generator `model`, the training `objective` (`conf/objective/`: regression, or adversarial
    with discriminators and manual optimisation), the generator's `optimizer` and `scheduler`
    (`_partial_` torch configs). They are stored resolved in the checkpoint, so `evaluate.py` and
    `upsample.py` rebuild the generator (only) from the checkpoint alone, through `SuperResolver`
    (`from_resolver`). Every validation and test reports the model and the cubic baseline on the
    same inputs.

    Under the adversarial objective `trainer.global_step` counts generator steps only (the
    discriminator's optimiser steps are not counted), so `trainer.max_steps`,
    `val_check_interval` and `every_n_train_steps` all mean generator steps.
    """

    def __init__(
        self,
        model: Mapping[str, Any],
        ratio: int,
        sample_rate: int,
        lowpass: Mapping[str, Any] | str = "chebyshev",
        objective: Mapping[str, Any] | None = None,
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        n_log_examples: int = 3,
        data_config: Mapping[str, Any] | None = None,
        compile: bool | str = False,
        generator: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.ratio = int(ratio)
        self.sample_rate = int(sample_rate)
        self.lowpass = as_lowpass_spec(lowpass)
        check_sample_rate(self.lowpass, self.sample_rate)
        objective = dict(objective or DEFAULT_OBJECTIVE)
        optimizer = dict(optimizer or DEFAULT_OPTIMIZER)
        self.save_hyperparameters(
            {
                "model": dict(model),
                "ratio": self.ratio,
                "sample_rate": self.sample_rate,
                "lowpass": lowpass_to_dict(self.lowpass),
                "objective": objective,
                "optimizer": optimizer,
                "scheduler": dict(scheduler) if scheduler else None,
                "n_log_examples": n_log_examples,
                # what it was trained on: evaluate.py's default data (metadata only)
                "data_config": dict(data_config) if data_config else None,
            }
        )
        # `generator`: the generator already built from `model` (a checkpoint's, by
        # `SuperResolver`: `from_resolver`); else a new one from the config
        built = generator if generator is not None else instantiate_trusted(model, "model")
        if not isinstance(built, SuperResModel):  # the interface chunked inference relies on
            raise ConfigError(
                f"model: {type(built).__module__}.{type(built).__qualname__} is not a "
                "SuperResModel (audio_superres.models.base): subclass it and declare "
                "chunk_alignment and context (docs/models.md)"
            )
        if built.ratio != self.ratio:
            raise ValueError(f"model ratio {built.ratio} differs from the task ratio {self.ratio}")
        self.model: SuperResModel = built
        self.objective: TrainingObjective = build_objective(objective)
        if self.objective.generator_spectrum:
            check_spectrum_sizes(built, self.objective)
        self.automatic_optimization = not self.objective.manual_optimization
        # Lightning clips only under automatic optimisation: the manual (adversarial) loop clips
        # with its objective's gradient_clip_val, or the trainer's (train.py moves it here)
        self.gradient_clip_val: float | None = getattr(self.objective, "gradient_clip_val", None)
        self.gradient_clip_algorithm: str = "norm"
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
        object.__setattr__(self, "_compiled_spectrum", None)  # forward_with_spectrum, compiled
        # chunked-inference settings of validation/test (not a hyperparameter: set by the task
        # from its `inference` node, the same for train.py, evaluate.py and upsample.py)
        self.inference = InferenceSettings()
        # evaluate.py's input_conditioning (issue 20): test inputs brought to the training
        # condition as SuperResolver brings a file (dsp.bandwidth.condition_lowres, the same
        # decision and filter), the model fed the result, cubic the input as made. Not a
        # hyperparameter; "off" (train.py, and evaluate.py by default) scores inputs as made.
        self.input_conditioning = "off"
        # the filter the model was trained on (what conditioning brings input to): `lowpass`
        # here, the checkpoint's in `from_resolver` (`lowpass` may be evaluate.py's override)
        self.training_lowpass: LowpassSpec = self.lowpass
        self._checks: list[InputCheck | None] = []  # the last eval batch's, per row
        # the test filter's name when several are scored (test_lowpass): keys test/<name>/...
        self.test_filter: str | None = None
        self.test_rows: list[dict[str, Any]] = []
        self.test_examples: list[dict[str, Any]] = []
        self.test_summary: dict[str, Any] = {}
        # lowpass=random: training batch j on rank r draws its filters from (seed, j, r), so a
        # resumed run continues the stream; validation/test restart from the spec's seed.
        self._train_rng: np.random.Generator | None = None
        self._eval_rng: np.random.Generator | None = None

    @classmethod
    def from_resolver(cls, resolver: SuperResolver, **kwargs: Any) -> SuperResolutionModule:
        """The module around a `SuperResolver`'s generator (the one way a checkpoint's generator
        is rebuilt: its stored config through the allow-list, its weights only), to test it:
        evaluate.py's metrics and test loop. The model config, ratio and sample rate are the
        resolver's; `lowpass` defaults to its training filter; `kwargs` go to `__init__` (e.g.
        `lowpass`, `n_log_examples`). The module holds the resolver's model itself, not a copy."""
        kwargs.setdefault("lowpass", resolver.training_lowpass)
        module = cls(
            model=resolver.model_config,
            ratio=resolver.ratio,
            sample_rate=resolver.sample_rate,
            generator=resolver.model,
            **kwargs,
        )
        module.training_lowpass = as_lowpass_spec(resolver.training_lowpass)
        return module

    def set_input_conditioning(self, mode: str) -> None:
        """evaluate.py's `input_conditioning` (auto | off | always): how test inputs reach the
        model (`condition_input`)."""
        self.input_conditioning = conditioning_mode(mode)

    def condition_input(self, lr: Tensor, stage: str) -> tuple[Tensor, list[InputCheck | None]]:
        """The low-res input the model is given: at test under `input_conditioning` auto/always,
        `lr` as upsample.py's default inference would condition it as a low-res file (measured,
        re-filtered with the training filter only when its top band says so:
        `dsp.bandwidth.condition_lowres`); else `lr` itself. Each row's check (None: off)."""
        if stage != "test" or self.input_conditioning == "off":
            return lr, [None] * lr.shape[0]
        return condition_lowres(
            lr,
            self.training_lowpass,
            self.ratio,
            self.sample_rate // self.ratio,
            self.input_conditioning,
        )

    # ---- the task -------------------------------------------------------------------------
    def make_inputs(
        self, hr: Tensor, rng: np.random.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Crop HR to a multiple of the ratio and make its low-res input (the one definition)."""
        hr = crop_to_multiple(hr, self.ratio)
        return hr, make_lowres(hr, self.ratio, self.lowpass, rng, sample_rate=self.sample_rate)

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
            object.__setattr__(self, "_compiled_model", self._compile(self.model))
        return self._compiled_model

    def _compile(self, fn: Any) -> Any:
        backend = self.compile_model
        kwargs = {"backend": backend} if isinstance(backend, str) else {}
        return torch.compile(fn, **kwargs)

    def _log_terms(self, prefix: str, terms: Mapping[str, Tensor]) -> None:
        if terms:
            logs = {f"{prefix}{k}": v for k, v in terms.items()}
            self.log_dict(logs, on_step=True, on_epoch=False)

    def _component_terms(
        self, pred: Tensor, hr: Tensor, spectrum: Spectrum | None = None
    ) -> dict[str, Tensor]:
        """`terms()` of the reconstruction losses that report components, at logging steps."""
        every = getattr(self._trainer, "log_every_n_steps", 1) if self._trainer else 1
        if self.global_step % max(1, every):
            return {}
        out = {}
        for name, loss in self.objective.reconstruction_losses().items():
            prefix = f"{name}/" if name else ""
            parts = loss_components(loss, pred, hr, spectrum)
            out.update({f"{prefix}{k}": v for k, v in parts.items()})
        return out

    def generate(self, lr: Tensor) -> tuple[Tensor, Spectrum | None]:
        """The training forward pass: the HR prediction, and the generator's own spectrum when
        the objective trains on it (`objective.generator_spectrum`); compiled like
        `train_model` when `compile` is set."""
        if not self.objective.generator_spectrum:
            return self.train_model(lr), None
        if not self.compile_model:
            return self.model.forward_with_spectrum(lr)
        if self._compiled_spectrum is None:
            compiled = self._compile(self.model.forward_with_spectrum)
            object.__setattr__(self, "_compiled_spectrum", compiled)
        return self._compiled_spectrum(lr)

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor | None:
        hr, lr = self.make_inputs(batch, self._rng("train"))
        if not self.automatic_optimization:
            return self._adversarial_step(hr, lr)
        pred, spectrum = self.generate(lr)
        loss, terms = self.objective.reconstruction(pred, hr, spectrum)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False)
        self._log_terms("train/recon/", {**terms, **self._component_terms(pred, hr, spectrum)})
        self._log_lr()
        return loss

    def _log_lr(self) -> None:
        """The learning rates in use (`train/lr`, `train/lr_disc`), with any logger or none."""
        if self._trainer is None:  # a step run by hand, outside a Trainer
            return
        optimizers = self.optimizers(use_pl_optimizer=False)
        if not isinstance(optimizers, list):
            optimizers = [optimizers]
        names = ("train/lr", "train/lr_disc")
        logs = {n: float(o.param_groups[0]["lr"]) for n, o in zip(names, optimizers, strict=False)}
        self.log_dict(logs, on_step=True, on_epoch=False)

    def _adversarial_step(self, hr: Tensor, lr: Tensor) -> None:
        """A discriminator step (after the warm-up), then a generator step (HiFi-GAN's order)."""
        objective = self.objective
        assert isinstance(objective, AdversarialObjective)
        opt_g, opt_d = self.optimizers()
        pred, spectrum = self.generate(lr)
        adversarial = self.global_step >= objective.warmup_steps
        several = len(objective.discriminators) > 1  # per-discriminator logs then add detail
        if adversarial:
            disc_loss, disc_parts = objective.discriminator_loss(hr, pred.detach())
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(disc_loss)
            self._clip_discriminators(opt_d)
            # through the strategy (precision plugin, AMP scaler) but not LightningOptimizer.step:
            # global_step then counts generator steps only
            self.trainer.strategy.optimizer_step(opt_d.optimizer, closure=lambda: None, model=self)
            self._step_schedulers("step", disc=True)
            logs = {"train/gan/disc": disc_loss.detach()}
            if several:
                logs.update({f"train/gan/disc/{k}": v for k, v in disc_parts.items()})
            self.log_dict(logs, on_step=True, on_epoch=False)

        with self.toggled_optimizer(opt_g):  # no gradients into the discriminators
            recon, terms = objective.reconstruction(pred, hr, spectrum)
            loss = recon
            if adversarial:
                gan, fm, parts = objective.adversarial(hr, pred)
                loss = loss + objective.gan_weight * gan + objective.feature_matching_weight * fm
                logs = {"train/gan/gen": gan.detach(), "train/feature_matching": fm.detach()}
                if several:
                    for name, (part_gan, part_fm) in parts.items():
                        logs[f"train/gan/gen/{name}"] = part_gan
                        logs[f"train/feature_matching/{name}"] = part_fm
                self.log_dict(logs, on_step=True, on_epoch=False)
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            self._clip(opt_g)
            opt_g.step()
        self._step_schedulers("step", disc=False)
        self.log("train/loss", loss.detach(), prog_bar=True, on_step=True, on_epoch=False)
        self._log_terms(  # components are computed under no_grad
            "train/recon/", {**terms, **self._component_terms(pred.detach(), hr, spectrum)}
        )
        self._log_lr()

    def clip_gradients(
        self,
        optimizer: Any,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Lightning's clipping, except under bf16 (or float32) with a fused optimiser: with no
        gradient scaler there is nothing to unscale, but Lightning's mixed-precision plugin refuses
        every fused optimiser; here the float32 gradients are clipped directly."""
        plugin = self.trainer.precision_plugin if self._trainer is not None else None
        if not gradient_clip_val or getattr(plugin, "scaler", None) is not None:
            return super().clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
        algorithm = gradient_clip_algorithm or self.trainer.gradient_clip_algorithm or "norm"
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if str(getattr(algorithm, "value", algorithm)).lower() == "value":
            torch.nn.utils.clip_grad_value_(params, gradient_clip_val)
        else:
            torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)

    def _clip(self, optimizer: Any) -> None:
        if self.gradient_clip_val:
            self.clip_gradients(
                optimizer,
                gradient_clip_val=self.gradient_clip_val,
                gradient_clip_algorithm=self.gradient_clip_algorithm,
            )

    def _clip_discriminators(self, optimizer: Any) -> None:
        """The discriminators' clip: all together, or with `objective.clip_each_discriminator`
        each discriminator's gradient norm on its own (AP-BWE clips MPD, MRAD and MRPD apart)."""
        objective = self.objective
        if not self.gradient_clip_val or not getattr(objective, "clip_each_discriminator", False):
            return self._clip(optimizer)
        plugin = self.trainer.precision_plugin if self._trainer is not None else None
        if getattr(plugin, "scaler", None) is not None:  # 16-mixed: unscale before the norms
            plugin.scaler.unscale_(getattr(optimizer, "optimizer", optimizer))
        algorithm = str(
            getattr(self.gradient_clip_algorithm, "value", self.gradient_clip_algorithm)
        )
        for disc in objective.discriminators.values():
            params = [p for p in disc.parameters() if p.grad is not None]
            if algorithm.lower() == "value":
                torch.nn.utils.clip_grad_value_(params, self.gradient_clip_val)
            else:
                torch.nn.utils.clip_grad_norm_(params, self.gradient_clip_val)

    def _step_schedulers(self, interval: str, disc: bool) -> None:
        """Manual optimisation steps its schedulers itself (Lightning's `interval`/`frequency`)."""
        opt_g, opt_d = self.optimizers()
        optimizer = (opt_d if disc else opt_g).optimizer
        for config in self.trainer.lr_scheduler_configs:
            if config.interval != interval or config.scheduler.optimizer is not optimizer:
                continue
            if interval == "epoch":
                count = self.current_epoch + 1
            elif disc:  # discriminator steps so far, this one included
                count = self.global_step - self.objective.warmup_steps + 1
            else:  # generator steps so far (global_step counts them, this one included)
                count = self.global_step
            if count % config.frequency == 0:
                config.scheduler.step()

    def on_train_epoch_end(self) -> None:
        if not self.automatic_optimization:
            self._step_schedulers("epoch", disc=False)
            if self.global_step > self.objective.warmup_steps:
                self._step_schedulers("epoch", disc=True)

    def configure_optimizers(self) -> Any:
        # fused Adam: the whole update in one kernel per parameter; the per-op loop spent ~10% of
        # a small U-Net's CPU training step (python -m audio_superres.bench model)
        hp = self.hparams
        generator = build_optimizer(hp["optimizer"], self.model.parameters())
        gen_sched = build_scheduler(hp["scheduler"], generator)
        if self.automatic_optimization:
            if gen_sched is None:
                return generator
            return {"optimizer": generator, "lr_scheduler": gen_sched}
        objective = self.objective
        assert isinstance(objective, AdversarialObjective)
        disc = build_optimizer(objective.disc_optimizer, objective.discriminators.parameters())
        disc_sched = build_scheduler(objective.disc_scheduler, disc)
        schedulers = [
            {**sched, "name": f"lr-{who}"}
            for who, sched in (("generator", gen_sched), ("discriminator", disc_sched))
            if sched is not None
        ]
        return [generator, disc], schedulers

    # ---- evaluation -----------------------------------------------------------------------
    def _eval_step(
        self, batch: Mapping[str, Any], stage: str
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, dict[str, dict[str, Tensor]]]:
        """Model and cubic on one batch; every metric from one STFT per signal (shared HR).
        The model gets the input as `condition_input` leaves it, cubic the input as made."""
        hr, lr = self.make_inputs(batch["hr"], self._rng(stage))
        model_lr, self._checks = self.condition_input(lr, stage)
        pred = self.super_resolve(model_lr)
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
        check = self._checks[0]
        if check is not None:  # input_conditioning auto/always: what was done to the input
            row.update({"input_conditioning": self.input_conditioning, **check.as_row()})
        self.test_rows.append(row)
        outputs = eval_outputs(batch, hr, lr, cubic, pred)
        if batch_idx < self.n_log_examples:
            self.test_examples.append(first_example(outputs))
        return outputs

    def on_test_epoch_end(self) -> None:
        summary = self._log_summary("test")
        self.test_summary = {**summary, "n_files": len(self.test_rows)}
        if self.input_conditioning != "off":
            self.test_summary["conditioning"] = {
                "input_conditioning": self.input_conditioning,
                "training_lowpass": lowpass_to_dict(self.training_lowpass),
                "n_refiltered": sum(bool(r.get("refiltered")) for r in self.test_rows),
                "n_files": len(self.test_rows),
            }


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
