"""Task settings shared by train.py, evaluate.py and upsample.py, kept out of the tasks so that no
task imports another: the `inference` node (`inference_settings`) and a setting the checkpoint
also stores (`settle_from_checkpoint`)."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from audio_superres.checkpoint import CheckpointError
from audio_superres.errors import ConfigError, config_errors
from audio_superres.inference import InferenceSettings
from audio_superres.utils import positive_int


def inference_settings(cfg: DictConfig) -> InferenceSettings:
    """The config's `inference` node (conf/inference/): how validation, test, evaluate.py and
    upsample.py chunk a signal; the `inference.DEFAULT_*` settings when there is none."""
    node = cfg.get("inference")
    if not node:
        return InferenceSettings()
    plain = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    with config_errors("inference"):
        if "_target_" not in plain:
            return InferenceSettings(**plain)
        from hydra.utils import instantiate

        settings = instantiate(plain)  # the run's own config, never a checkpoint's
        if not isinstance(settings, InferenceSettings):
            raise ValueError(f"{plain['_target_']} is not an InferenceSettings")
        return settings


def settle_from_checkpoint(cfg: DictConfig, key: str, stored: Any, ckpt_path: str | None) -> Any:
    """A task setting: the checkpoint's, unless given; a conflicting one is an error, and so
    is a value that is not a positive whole number (the setting, or the checkpoint, named)."""
    given = cfg.get(key)
    if given is not None and positive_int(given) is None:
        raise ConfigError(f"{key}={given} is not a positive whole number")
    if stored is not None and positive_int(stored) is None:
        raise CheckpointError(
            f"{ckpt_path}: the checkpoint stores {key}={stored!r}, not a positive whole number "
            "(a damaged or hand-edited checkpoint)"
        )
    given = positive_int(given) if given is not None else None
    stored = positive_int(stored) if stored is not None else None
    if given is not None and stored is not None and given != stored:
        raise CheckpointError(
            f"{ckpt_path}: the checkpoint was trained with {key}={stored}, but {key}={given} was "
            f"asked for; a model only works at the {key} it was trained for"
        )
    value = given if given is not None else stored
    if value is None:
        raise ConfigError(
            f"{key} is not set: pass {key}=... (there is no checkpoint to take it from)"
        )
    with open_dict(cfg):
        cfg[key] = int(value)
    return int(value)


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate every entry with a `_target_` of a callbacks/logger group."""
    if not group:
        return []
    from hydra.utils import instantiate  # lazily: the resolver imports this module, Hydra-free

    return [instantiate(node) for node in group.values() if node and "_target_" in node]
