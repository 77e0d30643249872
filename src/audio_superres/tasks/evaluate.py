"""What `python evaluate.py` does: score a checkpoint (or the cubic baseline) on held-out audio."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from audio_superres.checkpoint import (
    check_stored_data,
    instantiate_data,
    instantiate_trusted,
)
from audio_superres.dsp.lowpass import check_sample_rate
from audio_superres.errors import ConfigError, DataError, config_errors
from audio_superres.module import SuperResolutionModule
from audio_superres.report.page import evaluation_page
from audio_superres.report.results import format_table, write_results
from audio_superres.resolver import SuperResolver, load_model
from audio_superres.runs import (
    apply_extras,
    finish_wandb,
    library_versions,
    single_lightning_log,
)
from audio_superres.settings import (
    inference_settings,
    instantiate_group,
    settle_from_checkpoint,
)
from audio_superres.tasks.mismatch import (
    format_mismatch,
    parse_test_lowpass,
    score_under_filters,
)
from audio_superres.tasks.perceptual import perceptual_callbacks
from audio_superres.tasks.robustness import (
    CostReport,
    command_line,
    files_kind,
    grid_conditions,
    grid_description,
    grid_files,
)
from audio_superres.tasks.robustness import finish as finish_robustness
from audio_superres.utils import ensure_writable_dir

log = logging.getLogger(__name__)


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def sample_rate_of_files(data_cfg: dict[str, Any]) -> int:
    """The sample rate every held-out file of `data_cfg` has (read from the file headers), for a
    run without a checkpoint to take it from; an error naming the rates when they disagree."""
    import soundfile as sf

    from audio_superres.data.audio_io import AudioFileError

    corpus_cfg = {k: v for k, v in data_cfg["corpus"].items() if k != "_partial_"}
    args = {"test_speakers": data_cfg.get("test_speakers") or ()}
    if data_cfg.get("root") is not None:
        args["root"] = data_cfg["root"]
    corpus = instantiate(corpus_cfg, **args)  # the user's own data config, as train.py builds it
    corpus.prepare()
    files = corpus.split()["test"]
    if not files:
        raise DataError(
            f"{corpus.root}: no held-out file to take the sample rate from "
            f"(test_speakers={corpus.test_speakers!r}); pass sample_rate=..."
        )
    by_rate: dict[int, list[Path]] = {}
    for f in files:
        try:
            rate = int(sf.info(str(f.path)).samplerate)
        except (sf.SoundFileError, RuntimeError, OSError) as exc:
            raise AudioFileError(f"{f.path}: cannot read its header ({exc})") from exc
        by_rate.setdefault(rate, []).append(f.path)
    if len(by_rate) > 1:
        rates = "; ".join(
            f"{rate} Hz: {len(paths)} file{'s' if len(paths) > 1 else ''} (e.g. {paths[0]})"
            for rate, paths in sorted(by_rate.items())
        )
        raise DataError(
            f"{corpus.root}: the held-out files have different sample rates ({rates}); pass "
            "sample_rate=... (every file is resampled to it)"
        )
    (rate,) = by_rate
    log.info("sample_rate=%d: the rate of all %d held-out files under %s", rate, len(files),
             corpus.root)
    return rate


def build_for_evaluation(
    cfg: DictConfig,
) -> tuple[SuperResolutionModule, dict[str, Any], bool]:
    """The module to evaluate, the resolved data config, and whether that config comes from the
    checkpoint (then it is built only from the data allow-list, `checkpoint.instantiate_data`)."""
    # a checkpoint, or a bundled model's name / exported card (then data= must be given)
    ckpt = load_model(cfg.ckpt_path)[0] if cfg.get("ckpt_path") else None
    hp: dict[str, Any] = ckpt["hyper_parameters"] if ckpt else {}
    ckpt_path = cfg.get("ckpt_path")
    ratio = settle_from_checkpoint(cfg, "ratio", hp.get("ratio"), ckpt_path)
    stored_rate = hp.get("sample_rate")
    if ckpt is None and cfg.get("sample_rate") is None and cfg.get("data") is not None:
        stored_rate = sample_rate_of_files(_plain(cfg.data))  # model=cubic on a folder
    sample_rate = settle_from_checkpoint(cfg, "sample_rate", stored_rate, ckpt_path)

    if ckpt is not None and cfg.get("data") is None and hp.get("data_config") is not None:
        check_stored_data(hp["data_config"], str(ckpt_path))  # before anything is built
    if ckpt is not None and cfg.get("model") is not None:
        raise ConfigError(
            "model= was given together with ckpt_path=: the model is stored in the checkpoint; "
            "drop model= (or drop ckpt_path= to evaluate a model without weights, e.g. model=cubic)"
        )
    model_cfg = hp.get("model") if ckpt is not None else _plain(cfg.get("model"))
    if model_cfg is None:
        raise ConfigError("nothing to evaluate: pass ckpt_path=CKPT, or model=cubic")
    if ckpt is None and any(True for _ in instantiate_trusted(model_cfg, "model").parameters()):
        raise ConfigError(
            f"model {model_cfg['_target_']} has parameters to train: pass ckpt_path=CKPT"
        )

    lowpass = _plain(cfg.get("lowpass")) or hp.get("lowpass") or "chebyshev"
    settings = {"lowpass": lowpass, "n_log_examples": cfg.get("n_examples", 3)}
    if ckpt is not None:
        # the generator only (discriminators and optimisers are training state), built the one
        # way a checkpoint's generator is: by SuperResolver. Its device is unused here: the
        # trainer places the module (device=)
        resolver = SuperResolver.from_loaded(
            ckpt, str(ckpt_path), ratio=ratio, sample_rate=sample_rate, device="cpu"
        )
        module = SuperResolutionModule.from_resolver(resolver, **settings)
    else:
        module = SuperResolutionModule(
            model=model_cfg, ratio=ratio, sample_rate=sample_rate, **settings
        )

    data_cfg = _plain(cfg.get("data"))
    from_checkpoint = data_cfg is None and hp.get("data_config") is not None
    data_cfg = data_cfg or hp.get("data_config")
    if data_cfg is None:
        raise ConfigError(
            "no data to evaluate on: pass data=folder data.root=DIR data.test_speakers='*'"
        )
    return module, data_cfg, from_checkpoint


def no_test_files_message(datamodule: Any) -> str:
    """Why a prepared data module has nothing to evaluate on: every file unreadable (skipped,
    with the cache's report), every held-out file too short, or no file of test_speakers."""
    import json

    root, speakers = datamodule.corpus.root, datamodule.corpus.test_speakers
    cache = datamodule.cache
    report = Path(cache.path) / "report.json" if cache is not None else None
    skipped = []
    if report is not None and report.is_file():
        skipped = json.loads(report.read_text()).get("skipped") or []
    if cache is not None and not cache.entries and skipped:
        return (
            f"{root}: no held-out file to evaluate on: all {len(skipped)} audio file(s) were "
            f"skipped as unreadable (on_bad_file=skip; reasons in {report}), e.g. "
            f"{skipped[0]['reason']}"
        )
    short = list(getattr(datamodule, "short_eval", []) or [])
    if short:
        more = f" ({len(skipped)} more skipped as unreadable: {report})" if skipped else ""
        return (
            f"{root}: no held-out file to evaluate on: the {len(short)} held-out file(s) of "
            f"test_speakers={speakers!r} are all too short (e.g. {short[0]}){more}"
        )
    more = f"; {len(skipped)} file(s) skipped as unreadable, listed in {report}" if skipped else ""
    return f"{root}: no held-out file to evaluate on (no file of test_speakers={speakers!r}{more})"


EVAL_SPLITS = ("test", "val")  # split=: what evaluate.py scores


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Test on every held-out file; write metrics.json, per_file.csv and example WAVs."""
    single_lightning_log()
    apply_extras(cfg)
    L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    device = cfg.get("device", "auto")
    accelerator = {"auto": "auto", "cpu": "cpu", "cuda": "gpu", "gpu": "gpu"}.get(device)
    if accelerator is None:
        raise ConfigError(f"device must be one of auto, cpu, cuda; got {device!r}")
    if accelerator == "gpu" and not torch.cuda.is_available():
        raise ConfigError("device=cuda was asked for, but no CUDA device is available")
    versions = library_versions()
    output_dir = ensure_writable_dir(output_dir)
    with config_errors("model"):
        module, data_cfg, data_from_checkpoint = build_for_evaluation(cfg)
    module.inference = inference_settings(cfg)  # as in train.py's validation and test
    conditioning = str(cfg.get("input_conditioning", "off")).lower()
    module.set_input_conditioning(conditioning)  # ConfigError for an unknown mode
    if conditioning != "off" and not cfg.get("ckpt_path"):
        raise ConfigError(
            f"input_conditioning={conditioning} brings input to a checkpoint's training filter: "
            "pass ckpt_path=CKPT (or input_conditioning=off)"
        )
    with config_errors("data"):
        if data_from_checkpoint:
            datamodule = instantiate_data(data_cfg, str(cfg.ckpt_path))
        else:  # the user's own config, as in train.py
            datamodule = instantiate(data_cfg)
    grid = _plain(cfg.get("degradations"))
    conditions = None
    if grid:
        if cfg.get("test_lowpass"):
            raise ConfigError(
                "test_lowpass= and degradations= were both given: the robustness grid is its own "
                "list of test conditions; drop one"
            )
        conditions = grid_conditions(grid)
        files = grid_files(grid)
        if files is not None:  # a fixed subset: evenly spaced over the sorted held-out files
            datamodule.test_max_files = files
    datamodule.prepare_data()
    datamodule.setup("test")
    split = str(cfg.get("split", "test"))
    if split not in EVAL_SPLITS:
        raise ConfigError(f"split must be one of {', '.join(EVAL_SPLITS)}; got {split!r}")
    if split == "val":  # model selection: the validation utterances, never a test file
        if not datamodule.val_indices:
            raise DataError(
                f"{datamodule.corpus.root}: split=val, but the validation split is empty"
            )
        datamodule.test_indices = list(datamodule.val_indices)
    if not datamodule.test_indices:
        raise DataError(no_test_files_message(datamodule))

    with config_errors("logger"):
        loggers = instantiate_group(cfg.get("logger"))
    with config_errors("callbacks"):
        callbacks = instantiate_group(cfg.get("callbacks"))
    for logger in loggers:
        resolved = OmegaConf.to_container(cfg, resolve=True)
        logger.log_hyperparams({"config": resolved, "seed": cfg.seed, "versions": versions})
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=1,
        logger=loggers or False,
        callbacks=[*callbacks, *perceptual_callbacks(cfg)],
        enable_checkpointing=False,
        default_root_dir=str(output_dir),
        enable_model_summary=False,
    )
    meta = {
        "ratio": module.ratio,
        "lowpass": module.lowpass.kind,
        "lowpass_spec": module.hparams["lowpass"],
        "sample_rate": module.sample_rate,
        "checkpoint": cfg.get("ckpt_path"),
        "model_target": module.hparams["model"]["_target_"],
        "seed": cfg.seed,
        "split": split,
        # how the model's input was conditioned (the cubic baseline always gets it as made)
        "input_conditioning": conditioning,
        "versions": versions,
    }
    if conditions is not None:
        return _robustness(cfg, trainer, module, datamodule, conditions, grid, output_dir, meta,
                           loggers)
    if cfg.get("test_lowpass"):
        # the filter-mismatch study: one test per filter, mismatch.csv beside metrics.json
        try:
            path, results = score_under_filters(
                trainer, module, datamodule, cfg.test_lowpass, output_dir, meta
            )
        finally:
            finish_wandb()
        print(format_mismatch(results))
        print(path)
        return {"metrics_path": str(path), **results[0].summary}
    try:
        trainer.test(module, datamodule=datamodule, verbose=False)  # our table follows
    finally:
        finish_wandb()
    path = write_results(
        output_dir, module.test_summary, module.test_rows, module.test_examples, meta
    )
    evaluation_page(output_dir, module.test_summary, module.test_rows, module.test_examples, meta)
    print(format_table(module.test_summary))
    print(path)
    return {"metrics_path": str(path), **module.test_summary}


def _robustness(
    cfg: DictConfig,
    trainer: L.Trainer,
    module: SuperResolutionModule,
    datamodule: L.LightningDataModule,
    conditions: list[dict[str, Any]],
    grid: dict[str, Any],
    output_dir: Path,
    meta: dict[str, Any],
    loggers: list[Any],
) -> dict[str, Any]:
    """The robustness benchmark (`degradations=...`): mismatch.csv, robustness.csv, summary.md."""
    for name, spec in parse_test_lowpass(conditions):
        try:
            check_sample_rate(spec, module.sample_rate)
        except ValueError as exc:
            raise ConfigError(f"degradations: condition {name}: {exc}") from None
    n_files = len(datamodule.test_indices)
    print(
        f"robustness grid {grid.get('name', '')}: {len(conditions)} conditions x {n_files} "
        f"{files_kind(meta)} files = "
        f"{len(conditions) * n_files} file scorings (model and cubic)",
        flush=True,
    )
    cost = CostReport(len(conditions), n_files)
    try:
        path, results = score_under_filters(
            trainer, module, datamodule, conditions, output_dir, meta, on_result=cost
        )
        corpus = datamodule.corpus
        all_files = datamodule.test_max_files is None
        summary_meta = {
            **meta,
            "grid_name": grid.get("name", "degradations"),
            "grid_description": grid_description(grid),
            "command": command_line(),
            "n_files": n_files,
            "data_root": str(corpus.root),
            "test_speakers": list(corpus.test_speakers)
            if isinstance(corpus.test_speakers, (list, tuple)) else corpus.test_speakers,
            "file_choice": "the validation split (split=val: utterances of the training "
            "speakers, never a test file)" if meta.get("split") == "val"
            else "all of them" if all_files else (
                f"at most degradations.files={datamodule.test_max_files}, evenly spaced over the "
                "sorted held-out list (data.test_max_files: the same files for every checkpoint, "
                "chosen before any score)"
            ),
            "seconds": cost.seconds,
        }
        summary = finish_robustness(output_dir, results, summary_meta, loggers)
    finally:
        finish_wandb()
    print(format_mismatch(results))
    print(
        f"worst condition {summary['worst_condition']}: SNR gain {summary['worst_snr_gain']:+.2f} "
        f"dB; mean over {summary['n_conditions']}: {summary['mean_snr_gain']:+.2f} dB; "
        f"{cost.seconds / 60:.1f} min"
    )
    print(output_dir / "summary.md")
    return {"metrics_path": str(path), **summary, **results[0].summary}
