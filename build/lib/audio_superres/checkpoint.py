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
from lightning.fabric.plugins import TorchCheckpointIO

from audio_superres.errors import UserFacingError
from audio_superres.utils import atomic_write_with

TRUSTED_PREFIX = "audio_superres."


class CheckpointError(UserFacingError, ValueError):
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


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's CheckpointIO, writing each checkpoint atomically.

    Lightning writes a checkpoint straight onto its final name, so a run killed (or out of
    disk) in the middle of a save leaves a truncated `last.ckpt` that cannot be resumed. Here
    the checkpoint goes to a temporary name in the same folder, is fsync'ed, then renamed onto
    the final name: `last.ckpt` is always the previous complete one or the new complete one.
    Wired in through the trainer config (`plugins`); remote (fsspec URL) paths fall back to
    Lightning's own writer.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())

        atomic_write_with(path, write)
        fsync_dir(Path(path).parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (best effort: not every file system supports it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the hidden temporaries (`.<name>.*.tmp.ckpt`) that a killed save leaves behind."""
    removed = []
    for tmp in Path(folder).glob(".*.tmp.ckpt"):
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed
