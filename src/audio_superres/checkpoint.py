"""Checkpoints: safe loading (weights_only) and building objects only from our own classes.

A checkpoint stores the configs of its model and loss as plain dicts with a `_target_`. Building
them back must not run arbitrary code from an untrusted file, so only targets inside this package
are accepted, and the file itself is read with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate

TRUSTED_PREFIX = "audio_superres."


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or not one of ours."""


def _check_targets(cfg: Any, where: str) -> None:
    if isinstance(cfg, Mapping):
        target = cfg.get("_target_")
        if target is not None and not str(target).startswith(TRUSTED_PREFIX):
            raise CheckpointError(
                f"{where}: refusing to build '{target}': only classes of {TRUSTED_PREFIX[:-1]} "
                "may be instantiated from a config stored in a checkpoint"
            )
        for key, value in cfg.items():
            _check_targets(value, f"{where}.{key}")
    elif isinstance(cfg, (list, tuple)):
        for i, value in enumerate(cfg):
            _check_targets(value, f"{where}[{i}]")


def instantiate_trusted(cfg: Mapping, where: str = "config", **kwargs: Any) -> Any:
    """`hydra.utils.instantiate`, refusing any `_target_` outside this package."""
    _check_targets(cfg, where)
    return instantiate(dict(cfg), **kwargs)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a Lightning checkpoint of this project safely onto the CPU."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means the file is unusable
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint ({first})") from exc
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{path}: not a Lightning checkpoint (no state_dict)")
    hp = ckpt.get("hyper_parameters")
    if not isinstance(hp, dict) or "model" not in hp or "ratio" not in hp:
        raise CheckpointError(
            f"{path}: not an audio_superres checkpoint (no model/ratio in its hyper_parameters)"
        )
    return ckpt
