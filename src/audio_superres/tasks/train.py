"""What `python train.py` does: build everything from the Hydra config, fit, test the best."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from audio_superres.checkpoint import (
    CheckpointError,
    check_weights_fit,
    load_checkpoint,
    remove_stale_temporaries,
)
from audio_superres.errors import ConfigError, PathNotFoundError, config_errors
from audio_superres.module import SuperResolutionModule
from audio_superres.precision import (
    PRECISIONS,
    PrecisionChoice,
    accelerator_device,
    choose_precision,
)
from audio_superres.report.media import MediaLogger
from audio_superres.report.results import format_table, write_results
from audio_superres.resolver import SuperResolver, load_model
from audio_superres.runs import (
    apply_extras,
    finish_wandb,
    library_versions,
    multirun_group,
    single_lightning_log,
    write_status,
)
from audio_superres.settings import inference_settings, instantiate_group
from audio_superres.tasks.best_metric import BestMetric
from audio_superres.tasks.mismatch import format_mismatch, score_under_filters
from audio_superres.tasks.perceptual import perceptual_callbacks
from audio_superres.utils import atomic_write_json, ensure_writable_dir

log = logging.getLogger(__name__)


def build_module(cfg: DictConfig) -> SuperResolutionModule:
    """The LightningModule of the config's `module` node; its configs resolved to plain dicts
    (stored so in hparams and checkpoints), built by the module itself."""
    module = instantiate(
        OmegaConf.to_container(cfg.module, resolve=True), _recursive_=False, _convert_="all"
    )
    if not isinstance(module, SuperResolutionModule):
        raise ConfigError(f"module._target_ must be a SuperResolutionModule, got {type(module)}")
    return module


def initialize_generator(module: SuperResolutionModule, ref: str) -> str:
    """Start the generator from the weights `ref` names (`init_from=`: a training checkpoint,
    a bundled model's name, or an exported model's card), read as inference reads them
    (`resolver.load_model`: safe loading, allow-list); only the generator's weights are taken:
    optimiser, schedule, step count and discriminators start afresh (fine-tuning; the
    adversarial arm after a regression warm-up). Returns what was loaded, for the log."""
    loaded, where = load_model(ref)
    hp = loaded["hyper_parameters"]
    if int(hp["ratio"]) != module.ratio or int(hp["sample_rate"]) != module.sample_rate:
        raise ConfigError(
            f"init_from={ref}: trained for ratio {hp['ratio']} at {hp['sample_rate']} Hz, this "
            f"run is ratio {module.ratio} at {module.sample_rate} Hz"
        )
    weights = SuperResolver.from_loaded(loaded, where, device="cpu").model.state_dict()
    check_weights_fit(weights, module.model.state_dict(), where)
    module.model.load_state_dict(weights)
    step = loaded.get("global_step")
    return f"{where}" + (f" (step {step})" if step is not None else "")


def clip_under_manual_optimization(cfg: DictConfig, module: SuperResolutionModule) -> None:
    """Lightning clips gradients only under automatic optimisation: an adversarial module
    clips its two optimisers itself, with the trainer's `gradient_clip_*` settings, or its
    objective's `gradient_clip_val` (already on the module); both set and different is an
    error rather than a silent choice."""
    clip = cfg.trainer.get("gradient_clip_val")
    if module.automatic_optimization or not clip:
        return
    own = getattr(module.objective, "gradient_clip_val", None)
    if own is not None and float(own) != float(clip):
        raise ConfigError(
            f"trainer.gradient_clip_val={clip} and objective.gradient_clip_val={own} differ: "
            "set one (objective.gradient_clip_val=... under an adversarial objective)"
        )
    module.gradient_clip_val = float(clip)
    module.gradient_clip_algorithm = cfg.trainer.get("gradient_clip_algorithm") or "norm"
    with open_dict(cfg):
        cfg.trainer.gradient_clip_val = None


def drop_callbacks_needing_a_logger(callbacks: list[Any], loggers: list[Any]) -> list[Any]:
    """Lightning's LearningRateMonitor refuses to run without a logger (logger=none): drop it."""
    if loggers:
        return callbacks
    from lightning.pytorch.callbacks import LearningRateMonitor

    return [c for c in callbacks if not isinstance(c, LearningRateMonitor)]


class WriteSplits(L.Callback):
    """Write `splits.json` (the files of train, val and test) into the run dir at fit start, and
    log the splits' sizes (files, minutes, speakers; files left out of evaluation)."""

    def __init__(self, output_dir: Path) -> None:
        self.path = Path(output_dir) / "splits.json"

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        datamodule = trainer.datamodule
        if trainer.is_global_zero and hasattr(datamodule, "split_files"):
            atomic_write_json(self.path, datamodule.split_files())
            if hasattr(datamodule, "describe"):
                log.info("data: %s", datamodule.describe())


def drop_progress_bar_if_disabled(callbacks: list[Any], trainer_cfg: DictConfig) -> list[Any]:
    """`trainer.enable_progress_bar=false` turns the callbacks group's bar off (Lightning
    would refuse a progress bar callback it is told not to show)."""
    if trainer_cfg.get("enable_progress_bar", True):
        return callbacks
    from lightning.pytorch.callbacks import ProgressBar

    return [c for c in callbacks if not isinstance(c, ProgressBar)]


def resolve_ckpt_path(ckpt_path: str | None, output_dir: Path) -> str | None:
    """`last` means this run directory's checkpoints/last.ckpt (rerun with its hydra.run.dir);
    `auto` means that file if it exists, else a fresh start (a long run's one command, run again
    after any interruption)."""
    if ckpt_path in (None, "", "null"):
        return None
    if ckpt_path == "auto":
        path = output_dir / "checkpoints" / "last.ckpt"
        return str(path) if path.is_file() else None
    if ckpt_path == "last":
        path = output_dir / "checkpoints" / "last.ckpt"
        if not path.is_file():
            raise PathNotFoundError(
                f"{path}: no last checkpoint to resume from; pass hydra.run.dir=<the earlier "
                "run dir> with ckpt_path=last, or ckpt_path=<path to a .ckpt>"
            )
        return str(path)
    if not Path(ckpt_path).is_file():
        raise PathNotFoundError(f"{ckpt_path}: checkpoint to resume from not found")
    return str(ckpt_path)


def single_device_tester(trainer: L.Trainer) -> L.Trainer | None:
    """After a DDP fit: end the process group; rank 0 gets a one-device Trainer, others None."""
    import torch.distributed as dist

    is_zero = trainer.is_global_zero
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    if not is_zero:
        return None
    return L.Trainer(
        accelerator=trainer.accelerator.__class__.__name__.replace("Accelerator", "").lower(),
        devices=1,
        num_nodes=1,
        logger=trainer.loggers or False,
        callbacks=[c for c in trainer.callbacks if isinstance(c, MediaLogger)],  # test media
        enable_checkpointing=False,
        enable_model_summary=False,
        default_root_dir=trainer.default_root_dir,
    )


def run_job(cfg: DictConfig) -> float:
    """`train` with its outcome recorded in status.json.

    In a multirun a failing job returns NaN instead of raising: Hydra's sweeper re-raises a
    job's exception after the batch, which would end the sweep before the summary callback
    runs. The failure is in status.json (and the log), and the summary marks the job failed.
    A single run raises as usual.
    """
    output_dir = Path(cfg.paths.output_dir)
    write_status(output_dir, "running")
    try:
        score = train(cfg)
    except Exception as err:
        import traceback

        write_status(
            output_dir,
            "failed",
            error=f"{type(err).__name__}: {err}",
            traceback=traceback.format_exc(),
        )
        if multirun_group(cfg) is None:
            raise
        log.exception("job failed (recorded in %s)", output_dir / "status.json")
        return float("nan")
    write_status(output_dir, "completed", optimized_metric=optimized_metric(cfg), best=score)
    return score


def optimized_metric(cfg: DictConfig) -> str:
    """The metric whose best validation value train.py returns (default val/snr)."""
    return str(cfg.get("optimized_metric") or "val/snr")


def apply_precision(cfg: DictConfig) -> PrecisionChoice:
    """The precision training runs in, and why: the top-level `precision` (auto, 32, bf16) as
    `trainer.precision` resolved it for the training device, or a `trainer.precision` set by
    itself (a Lightning-only value such as 16-mixed passes as it is)."""
    device = accelerator_device(cfg.trainer.get("accelerator"))
    lightning = str(cfg.trainer.get("precision", "32-true"))
    try:
        choice = choose_precision(cfg.get("precision", lightning), device)
    except ConfigError:
        choice = None
    if choice is None or choice.lightning != lightning:
        try:
            choice = choose_precision(lightning, device)
        except ConfigError:
            return PrecisionChoice(lightning, "trainer.precision, passed to Lightning as it is")
    with open_dict(cfg):
        cfg.trainer.precision = choice.lightning
    return choice


def check_resumable(
    ckpt_path: str, cfg: DictConfig, module: L.LightningModule | None = None
) -> None:
    """Read the checkpoint to resume from safely first (weights_only) and check that it is of
    this task (and that its weights fit `module`, the one built from the config), so a corrupt
    or foreign file is one clear line, not an unpickling or size-mismatch traceback."""
    ckpt = load_checkpoint(ckpt_path)
    hp = ckpt["hyper_parameters"]
    for key in ("ratio", "sample_rate"):
        if key in hp and int(hp[key]) != int(cfg[key]):
            raise CheckpointError(
                f"{ckpt_path}: the checkpoint was trained with {key}={hp[key]}, but {key}="
                f"{cfg[key]} was asked for; resume with the settings of the run it comes from"
            )
    if module is not None:
        # shapes only: which names a module holds is Lightning's (strict) business at load time
        check_weights_fit(ckpt["state_dict"], module.state_dict(), str(ckpt_path), shapes_only=True)


def train(cfg: DictConfig) -> float:
    """Fit, test the best checkpoint, write metrics.json; return the best validation value of
    `optimized_metric` (val/snr by default), the value a Hydra sweeper optimises."""
    single_lightning_log()
    apply_extras(cfg)
    L.seed_everything(cfg.seed, workers=True)
    versions = library_versions()
    log.info("seed %s, versions %s", cfg.seed, versions)
    output_dir = ensure_writable_dir(cfg.paths.output_dir)
    ckpt_dir = ensure_writable_dir(output_dir / "checkpoints")
    for tmp in remove_stale_temporaries(ckpt_dir):
        log.info("removed %s, the temporary of a save that was killed", tmp)
    group = multirun_group(cfg)
    wandb_cfg = (cfg.get("logger") or {}).get("wandb")
    if group is not None and wandb_cfg is not None and not wandb_cfg.get("group"):
        with open_dict(cfg):
            cfg.logger.wandb.group = group

    # every setting is checked here, before any data is prepared or any step is trained
    with config_errors("data"):
        datamodule = instantiate(cfg.data)
    with config_errors("model"):
        module = build_module(cfg)
        clip_under_manual_optimization(cfg, module)
    module.inference = inference_settings(cfg)  # validation and test = evaluate.py's inference
    with config_errors("callbacks"):
        callbacks = instantiate_group(cfg.get("callbacks"))
    best_metric = BestMetric(optimized_metric(cfg))
    callbacks.append(best_metric)
    callbacks.append(WriteSplits(output_dir))
    with config_errors("logger"):
        loggers = instantiate_group(cfg.get("logger"))
    callbacks = drop_callbacks_needing_a_logger(callbacks, loggers)
    callbacks = drop_progress_bar_if_disabled(callbacks, cfg.trainer)
    perceptual = perceptual_callbacks(cfg)  # PESQ/STOI of the final test, if asked for

    max_steps = cfg.trainer.get("max_steps", -1)
    interval = cfg.trainer.get("val_check_interval")
    if isinstance(interval, int) and max_steps and 0 < max_steps < interval:
        with open_dict(cfg):
            cfg.trainer.val_check_interval = max_steps  # validate at least once
    precision = apply_precision(cfg)
    log.info("training %s", precision.describe())
    if precision.name in PRECISIONS:  # validation and test in the arithmetic of training
        module.inference = replace(module.inference, precision=precision.name)
    with config_errors("trainer"):
        trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)

    resolved = OmegaConf.to_container(cfg, resolve=True)
    for logger in trainer.loggers:
        logger.log_hyperparams({"config": resolved, "seed": cfg.seed, "versions": versions})

    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), output_dir)
    if ckpt_path is not None:
        check_resumable(ckpt_path, cfg, module)
    if cfg.get("init_from") and ckpt_path is None:
        log.info("generator initialised from %s", initialize_generator(module, cfg.init_from))
    elif cfg.get("init_from"):
        log.info("init_from=%s not applied: resuming %s restores every weight", cfg.init_from,
                 ckpt_path)  # fmt: skip
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        # the final state, whatever the interval (full state, so it can be resumed)
        trainer.save_checkpoint(ckpt_dir / "last.ckpt", weights_only=False)

        best = next((c for c in trainer.checkpoint_callbacks if getattr(c, "monitor", None)), None)
        best_path = best.best_model_path if best is not None and best.best_model_path else None
        best_score = float(best.best_model_score) if best_path else float("nan")
        monitor = getattr(best, "monitor", None)
        log.info("best checkpoint: %s (%s %.3f)", best_path, monitor, best_score)
        result = best_metric.result()
        log.info("best %s: %.4f (%s)", best_metric.metric, result, best_metric.mode)
        if not cfg.get("test_after_fit", True):
            return result

        test_ckpt = best_path or str(ckpt_dir / "last.ckpt")
        meta = {
            "ratio": module.ratio,
            "lowpass": module.hparams["lowpass"]["kind"],
            "lowpass_spec": module.hparams["lowpass"],
            "sample_rate": module.sample_rate,
            "checkpoint": test_ckpt,
            "best_val_snr": best_score,
            "global_step": trainer.global_step,
            "seed": cfg.seed,
            "precision": precision.name,
            "versions": versions,
        }
        if trainer.world_size > 1:
            # Test on one device: a distributed test would pad the file list (counting some
            # files twice) and leave each rank with only its share of the per-file rows.
            trainer = single_device_tester(trainer)
            if trainer is None:
                return result
        trainer.callbacks.extend(perceptual)
        if cfg.get("test_lowpass"):
            metrics_path, results = score_under_filters(
                trainer, module, datamodule, cfg.test_lowpass, output_dir, meta, test_ckpt
            )
            print(format_mismatch(results))
        else:
            trainer.test(
                module, datamodule=datamodule, ckpt_path=test_ckpt, weights_only=True, verbose=False
            )
            metrics_path = write_results(
                output_dir, module.test_summary, module.test_rows, module.test_examples, meta
            )
            print(format_table(module.test_summary))
        print(metrics_path)
        return result
    finally:
        for logger in trainer.loggers:
            finalize = getattr(logger, "finalize", None)
            if finalize is not None:
                finalize("success")
        finish_wandb()
