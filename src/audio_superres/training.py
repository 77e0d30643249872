"""What `python train.py` does: build everything from the Hydra config, fit, test the best."""

from __future__ import annotations

import logging
import platform
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from audio_superres.module import SuperResolutionModule
from audio_superres.report.results import format_table, write_results

log = logging.getLogger(__name__)


def single_lightning_log() -> None:
    """Print Lightning's messages once: `import lightning` adds its own console handler even
    when Hydra has already set up logging, which doubles every line."""
    if logging.getLogger().handlers:
        logging.getLogger("lightning").handlers.clear()



def find_conf_dir() -> Path:
    """The repository's `conf/`: next to the package (editable install) or under the CWD."""
    candidates = [Path(__file__).resolve().parents[2] / "conf", Path.cwd() / "conf"]
    for conf in candidates:
        if (conf / "train.yaml").is_file() and (conf / "model").is_dir():
            return conf
    raise FileNotFoundError(
        "cannot find the Hydra config directory (conf/train.yaml); looked in "
        + ", ".join(str(c) for c in candidates)
        + ": run from the repository root"
    )


def library_versions() -> dict[str, str]:
    """Versions logged with every run, so a result can be traced to its software."""
    import hydra
    import lightning
    import numpy
    import scipy
    import torch
    import torchaudio
    import torchmetrics

    import audio_superres

    return {
        "audio_superres": audio_superres.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchaudio": torchaudio.__version__,
        "lightning": lightning.__version__,
        "hydra": hydra.__version__,
        "torchmetrics": torchmetrics.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
    }


def build_module(cfg: DictConfig) -> SuperResolutionModule:
    """The LightningModule of a train config; configs are stored resolved, as plain dicts."""
    plain = lambda node: OmegaConf.to_container(node, resolve=True)  # noqa: E731
    return SuperResolutionModule(
        model=plain(cfg.model),
        ratio=cfg.ratio,
        sample_rate=cfg.sample_rate,
        lowpass=plain(cfg.lowpass),
        loss=plain(cfg.loss),
        optim=plain(cfg.optim),
        n_log_examples=cfg.get("n_log_examples", 3),
        data_config=plain(cfg.data),
        compile=cfg.get("compile", False),
    )


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate every entry with a `_target_` of a callbacks/logger group."""
    if not group:
        return []
    return [instantiate(node) for node in group.values() if node and "_target_" in node]


def resolve_ckpt_path(ckpt_path: str | None, output_dir: Path) -> str | None:
    """`last` means this run directory's checkpoints/last.ckpt (rerun with its hydra.run.dir)."""
    if ckpt_path in (None, "", "null"):
        return None
    if ckpt_path == "last":
        path = output_dir / "checkpoints" / "last.ckpt"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: no last checkpoint to resume from; pass hydra.run.dir=<the earlier "
                "run dir> with ckpt_path=last, or ckpt_path=<path to a .ckpt>"
            )
        return str(path)
    if not Path(ckpt_path).is_file():
        raise FileNotFoundError(f"{ckpt_path}: checkpoint to resume from not found")
    return str(ckpt_path)


def train(cfg: DictConfig) -> float:
    """Fit, test the best checkpoint, write metrics.json; return the best validation SNR."""
    single_lightning_log()
    L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    datamodule = instantiate(cfg.data)
    module = build_module(cfg)
    callbacks = instantiate_group(cfg.get("callbacks"))
    loggers = instantiate_group(cfg.get("logger"))

    max_steps = cfg.trainer.get("max_steps", -1)
    interval = cfg.trainer.get("val_check_interval")
    if isinstance(interval, int) and max_steps and 0 < max_steps < interval:
        with open_dict(cfg):
            cfg.trainer.val_check_interval = max_steps  # validate at least once
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)

    resolved = OmegaConf.to_container(cfg, resolve=True)
    for logger in trainer.loggers:
        logger.log_hyperparams(
            {"config": resolved, "seed": cfg.seed, "versions": library_versions()}
        )

    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), output_dir)
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        ckpt_dir = output_dir / "checkpoints"
        # the final state, whatever the interval (full state, so it can be resumed)
        trainer.save_checkpoint(ckpt_dir / "last.ckpt", weights_only=False)

        best = next((c for c in trainer.checkpoint_callbacks if getattr(c, "monitor", None)), None)
        best_path = best.best_model_path if best is not None and best.best_model_path else None
        best_score = float(best.best_model_score) if best_path else float("nan")
        log.info("best checkpoint: %s (val/snr %.3f)", best_path, best_score)
        if not cfg.get("test_after_fit", True):
            return best_score

        trainer.test(
            module,
            datamodule=datamodule,
            ckpt_path=best_path or str(ckpt_dir / "last.ckpt"),
            weights_only=True,
        )
        meta = {
            "ratio": module.ratio,
            "lowpass": module.hparams["lowpass"]["kind"],
            "lowpass_spec": module.hparams["lowpass"],
            "sample_rate": module.sample_rate,
            "checkpoint": best_path or str(ckpt_dir / "last.ckpt"),
            "best_val_snr": best_score,
            "global_step": trainer.global_step,
        }
        metrics_path = write_results(
            output_dir, module.test_summary, module.test_rows, module.test_examples, meta
        )
        print(format_table(module.test_summary))
        print(metrics_path)
        return best_score
    finally:
        for logger in trainer.loggers:
            finalize = getattr(logger, "finalize", None)
            if finalize is not None:
                finalize("success")
        _finish_wandb()


def _finish_wandb() -> None:
    """Close the W&B run so the next job of a multirun starts its own."""
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()
