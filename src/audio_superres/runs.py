"""Run bookkeeping shared by the tasks and tools: where the configs are, what software ran,
a job's status file, W&B groups of a sweep. Imports nothing of the rest of the package back."""

from __future__ import annotations

import logging
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig

from audio_superres.utils import atomic_write_json


def compose_config(
    overrides: Sequence[str] = (), name: str = "train", return_hydra_config: bool = False
) -> DictConfig:
    """The config `python {name}.py OVERRIDES` would run with (`conf/`: `find_conf_dir`), composed
    outside a Hydra run: for tools that build what a task builds (bench, summaries, tables)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(find_conf_dir()), version_base="1.3"):
            return compose(name, overrides=list(overrides), return_hydra_config=return_hydra_config)
    finally:
        GlobalHydra.instance().clear()


def single_lightning_log() -> None:
    """Print Lightning's messages once: `import lightning` adds its own console handler even
    when Hydra has already set up logging, which doubles every line."""
    if logging.getLogger().handlers:
        logging.getLogger("lightning").handlers.clear()
    quiet_lightning_console()


class _DropLightningAdverts(logging.Filter):
    """Drops Lightning's advertisement for its cloud logger (printed at every Trainer)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in str(record.msg).lower()


def quiet_lightning_console() -> None:
    """Keep noise the user cannot act on out of the console: Lightning's "Tip: ... litlogger"
    (`logger_connector.py`, once per Trainer) and Lightning's own use of a torch API that torch
    2.11 deprecates (`utilities/_pytree.py`, LeafSpec). Idempotent."""
    import warnings

    rank_zero_log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropLightningAdverts) for f in rank_zero_log.filters):
        rank_zero_log.addFilter(_DropLightningAdverts())
    warnings.filterwarnings(
        "ignore", message=r".*isinstance\(treespec, LeafSpec\)", module="lightning"
    )



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

    # str(): torch.__version__ is a TorchVersion, which YAML loggers would write as a Python object
    return {
        "audio_superres": str(audio_superres.__version__),
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "torchaudio": str(torchaudio.__version__),
        "lightning": str(lightning.__version__),
        "hydra": str(hydra.__version__),
        "torchmetrics": str(torchmetrics.__version__),
        "numpy": str(numpy.__version__),
        "scipy": str(scipy.__version__),
    }


def multirun_group(cfg: DictConfig) -> str | None:
    """The W&B group shared by every job of a multirun (None for a single run).

    Derived from the job's output directory (`<sweep dir>/<job number>`), so jobs started by
    any launcher (basic, joblib, submitit) and the end-of-sweep summary agree on it.
    """
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
    except ValueError:  # not under @hydra.main
        return None
    if hc.mode != RunMode.MULTIRUN:
        return None
    return sweep_group(str(cfg.get("task_name", "train")), Path(hc.runtime.output_dir).parent)


def sweep_group(task_name: str, sweep_dir: Path) -> str:
    """`<task>-<sweep dir name>`: the W&B group name of one sweep."""
    return f"{task_name}-{Path(sweep_dir).name}"


def write_status(output_dir: Path, status: str, **extra: Any) -> Path:
    """status.json in the job dir: running / completed / failed (with the error), so a sweep
    summary can tell a failed job from one that is still going."""
    path = output_dir / "status.json"
    if rank_zero_only.rank != 0:  # DDP: the other ranks share rank 0's directory
        return path
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"status": status, **extra})
    return path


def finish_wandb() -> None:
    """Close the W&B run so the next job of a multirun starts its own."""
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


def apply_extras(cfg: DictConfig) -> None:
    """The `extras` of a config: `ignore_warnings` silences Python warnings for the run;
    `print_config` logs the resolved config as YAML (unresolved when a value is still missing,
    so the error about it comes from where it is used, with its own message)."""
    import warnings

    from omegaconf import OmegaConf

    extras = cfg.get("extras") or {}
    if extras.get("ignore_warnings"):
        logging.getLogger(__name__).info("extras.ignore_warnings: Python warnings are silenced")
        warnings.filterwarnings("ignore")
    if extras.get("print_config"):
        try:
            text = OmegaConf.to_yaml(cfg, resolve=True)
        except Exception:  # a missing (???) or failing value: show it as written
            text = OmegaConf.to_yaml(cfg)
        logging.getLogger(__name__).info("config:\n%s", text)
