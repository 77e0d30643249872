"""Checkpoints: safe loading (weights_only) and building objects only from an allow-list.

A checkpoint stores the configs of its model and loss as plain dicts with a `_target_`. Building
them back must not run code chosen by whoever wrote the file: `torch.load(weights_only=True)`
only reads tensors and plain containers, and a `_target_` is built only when it names a CLASS on
the allow-list, never a function or an attribute reached through an imported module:

- `nn.Module` subclasses defined under `audio_superres.models` (every `SuperResModel`, the
  discriminators) and `audio_superres.losses` (`MODULE_PACKAGES`), not abstract;
- for the evaluation data a training run recorded (`data_config`, evaluate.py's default data),
  `LightningDataModule` and `Corpus` subclasses defined under `audio_superres.data`.

A target is resolved by importing its module (which must lie inside an allowed package) and
taking one attribute; the result must be a class defined in an allowed package whose own path is
the target (or a re-export of it by its package's `__init__`). Every nested `_target_` is checked
before anything is built; `_partial_` (a factory instead of an object) is refused, except for the
corpus factory of a stored data config (a partial of an allowed class). Objects are
then built here, by calling the checked classes with the config's plain values (no Hydra, no
interpolation). The training objective, optimizer and scheduler configs a run stores for
reference are checked too (`check_stored_configs`: objective classes, `torch.optim` factories)
but never built from a checkpoint: evaluate.py and upsample.py rebuild only the model.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from audio_superres.errors import UserFacingError
from audio_superres.utils import atomic_write_with, remove_atomic_temporaries

PACKAGE = "audio_superres"
MODULE_PACKAGES = ("audio_superres.models", "audio_superres.losses")
DATA_PACKAGES = ("audio_superres.data",)
# what a checkpoint stores for reference but never builds: the training objective (nn.Modules of
# these packages) and the optimiser/scheduler factories (torch classes, our schedules)
OBJECTIVE_PACKAGES = (*MODULE_PACKAGES, "audio_superres.objectives")
OPTIM_PACKAGES = ("torch.optim", "audio_superres.schedules")
OPTIM_KEYS = ("optimizer", "scheduler", "disc_optimizer", "disc_scheduler")
# keys of a stored config that Hydra would interpret; anything else starting with "_" is refused
_CONFIG_KEYS = {"_target_", "_args_", "_recursive_", "_convert_"}
_BUILD_KEYS = _CONFIG_KEYS | {"_partial_"}


GENERATOR_PREFIX = "model."


def generator_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The generator's weights of a module checkpoint (keys `model.*`, prefix removed).

    Evaluation and inference load only these: a checkpoint's discriminators, loss buffers and
    optimiser states are training state.
    """
    n = len(GENERATOR_PREFIX)
    return {k[n:]: v for k, v in state_dict.items() if k.startswith(GENERATOR_PREFIX)}


class CheckpointError(UserFacingError, ValueError):
    """A checkpoint that is missing, unreadable or not one of ours."""


class RefusedTargetError(CheckpointError):
    """A stored config names something that is not on the allow-list."""


def _under(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def _module_bases() -> tuple[type, ...]:
    return (nn.Module,)


def _optim_bases() -> tuple[type, ...]:
    return (torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler)


def _data_bases() -> tuple[type, ...]:
    import lightning as L

    from audio_superres.data.corpora import Corpus

    return (L.LightningDataModule, Corpus)


def resolve_allowed_class(
    target: Any, packages: tuple[str, ...] = MODULE_PACKAGES, bases: tuple[type, ...] | None = None
) -> type:
    """The class a `_target_` names, if it is on the allow-list; ValueError (why) otherwise.

    Only the target's own module is imported, and only when it lies inside `packages`.
    """
    bases = _module_bases() if bases is None else bases
    if not isinstance(target, str) or not target:
        raise ValueError("a _target_ must be a dotted class path")
    module_path, _, name = target.rpartition(".")
    if not module_path or not name.isidentifier() or name.startswith("_"):
        raise ValueError("not a public class path")
    if not _under(module_path, packages):
        raise ValueError(f"only classes defined under {', '.join(packages)} may be built")
    try:
        module = importlib.import_module(module_path)
    except ImportError:
        raise ValueError(f"{module_path} is not a module of {PACKAGE}") from None
    obj = getattr(module, name, None)
    if obj is None:
        raise ValueError(f"{module_path} has no class {name}")
    if not inspect.isclass(obj):
        raise ValueError(f"it is a {type(obj).__name__}, not a class")
    if not issubclass(obj, bases):
        kinds = " or ".join(b.__name__ for b in bases)
        raise ValueError(f"{obj.__module__}.{obj.__qualname__} is not a {kinds} subclass")
    if not _under(obj.__module__, packages):
        raise ValueError(f"the class is defined in {obj.__module__}, outside the allow-list")
    own_path = f"{obj.__module__}.{obj.__qualname__}"
    reexported = (
        hasattr(module, "__path__")  # a package __init__ re-exporting its own submodule's class
        and obj.__module__.startswith(module_path + ".")
        and obj.__qualname__ == name
    )
    if target != own_path and not reexported:
        raise ValueError(f"it is not the class's own path ({own_path})")
    if inspect.isabstract(obj):
        raise ValueError("it is an abstract class")
    return obj


def check_targets(
    cfg: Any,
    where: str,
    packages: tuple[str, ...] = MODULE_PACKAGES,
    bases: tuple[type, ...] | None = None,
    allow_partial: bool = False,
    root: str = "config",
) -> None:
    """Refuse (RefusedTargetError naming `where`) any `_target_` in `cfg`, at any depth, that is
    not an allowed class, and any `_partial_` unless `allow_partial` (a factory of an allowed
    class: the data config's corpus); nothing is called."""
    allowed_keys = _CONFIG_KEYS | ({"_partial_"} if allow_partial else set())

    def walk(node: Any, path: str) -> None:
        if isinstance(node, Mapping):
            if "_target_" in node:
                target = node["_target_"]
                try:
                    resolve_allowed_class(target, packages, bases)
                    odd = sorted(
                        str(k) for k in node if str(k).startswith("_") and k not in allowed_keys
                    )
                    if odd:
                        raise ValueError(f"{', '.join(odd)} is not allowed in a stored config")
                    if not isinstance(node.get("_args_", []), (list, tuple)):
                        raise ValueError("_args_ must be a list")
                except ValueError as exc:
                    raise RefusedTargetError(
                        f"{where}: refusing to build '{target}' ({exc}; at {path})"
                    ) from None
            for key, value in node.items():
                walk(value, f"{path}.{key}")
        elif isinstance(node, (list, tuple)):
            for i, value in enumerate(node):
                walk(value, f"{path}[{i}]")

    walk(cfg, root)


def _build(node: Any, packages: tuple[str, ...], bases: tuple[type, ...] | None) -> Any:
    """Objects from a checked config: classes called with plain values, nested targets first."""
    if isinstance(node, Mapping):
        if "_target_" not in node:
            return {k: _build(v, packages, bases) for k, v in node.items()}
        cls = resolve_allowed_class(node["_target_"], packages, bases)
        args = [_build(v, packages, bases) for v in node.get("_args_", [])]
        kwargs = {
            str(k): _build(v, packages, bases) for k, v in node.items() if k not in _BUILD_KEYS
        }
        if node.get("_partial_") is True:  # only where check_targets allowed it
            return functools.partial(cls, *args, **kwargs)
        return cls(*args, **kwargs)
    if isinstance(node, (list, tuple)):
        return [_build(v, packages, bases) for v in node]
    return node


def _plain(cfg: Any) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg


def instantiate_trusted(cfg: Mapping, where: str = "config", **kwargs: Any) -> Any:
    """Build an allowed `nn.Module` (models, losses) from a config: every `_target_` in it must
    pass `check_targets` first. `kwargs` are extra constructor arguments."""
    cfg = _plain(cfg)
    check_targets(cfg, where)
    if not isinstance(cfg, Mapping) or "_target_" not in cfg:
        raise RefusedTargetError(f"{where}: a config with a _target_ class is needed")
    return _build({**cfg, **kwargs}, MODULE_PACKAGES, None)


def check_stored_configs(hp: Mapping[str, Any], where: str) -> None:
    """Check every config a checkpoint stores, before anything is built from any of it.

    The model (built by evaluate.py and upsample.py) and every other entry must name only
    allow-listed classes; the training objective may also name `audio_superres.objectives`
    classes, and the optimiser/scheduler entries (here and inside the objective) only
    `torch.optim` / `audio_superres.schedules` classes, as `_partial_` factories. Those are kept
    for reference and never built from a checkpoint. The data config is checked where it is used
    (`check_stored_data`).
    """
    for key, cfg in hp.items():
        cfg = _plain(cfg)
        if key == "data_config":
            continue
        if key in OPTIM_KEYS:
            check_targets(cfg, where, OPTIM_PACKAGES, _optim_bases(), True, root=key)
        elif key == "objective" and isinstance(cfg, Mapping):
            for sub in OPTIM_KEYS:
                if sub in cfg:
                    check_targets(cfg[sub], where, OPTIM_PACKAGES, _optim_bases(), True,
                                  root=f"objective.{sub}")  # fmt: skip
            rest = {k: v for k, v in cfg.items() if k not in OPTIM_KEYS}
            check_targets(rest, where, OBJECTIVE_PACKAGES, root="objective")
        else:
            check_targets(cfg, where, root=key)


def check_stored_data(cfg: Any, where: str) -> None:
    """Refuse a stored data config with anything but `audio_superres.data` classes in it."""
    check_targets(_plain(cfg), where, DATA_PACKAGES, _data_bases(), allow_partial=True)


def instantiate_data(cfg: Mapping, where: str = "data", **kwargs: Any) -> Any:
    """Build a data module recorded in a checkpoint: only `LightningDataModule`/`Corpus`
    classes of `audio_superres.data` (see the module docstring)."""
    cfg = _plain(cfg)
    bases = _data_bases()
    check_targets(cfg, where, DATA_PACKAGES, bases, allow_partial=True)
    if not isinstance(cfg, Mapping) or "_target_" not in cfg:
        raise RefusedTargetError(f"{where}: a config with a _target_ class is needed")
    return _build({**cfg, **kwargs}, DATA_PACKAGES, bases)


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
    # every stored config, checked before anything is called (the stored data config is
    # checked where it is used: `check_stored_data`)
    check_stored_configs(hp, str(path))
    if not isinstance(hp["model"], Mapping) or "_target_" not in hp["model"]:
        raise CheckpointError(f"{path}: its model config has no _target_ class")
    return ckpt


@functools.cache
def _atomic_checkpoint_io() -> type:
    """`AtomicCheckpointIO`, defined on first use: Lightning is imported only by the trainer
    that wires it in, not by everything that reads checkpoints (`SuperResolver`)."""
    from lightning.fabric.plugins import TorchCheckpointIO

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

    AtomicCheckpointIO.__module__ = __name__
    AtomicCheckpointIO.__qualname__ = "AtomicCheckpointIO"
    return AtomicCheckpointIO


def __getattr__(name: str) -> Any:
    if name == "AtomicCheckpointIO":
        return _atomic_checkpoint_io()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    return remove_atomic_temporaries(folder, suffixes=(".ckpt",))


def weights_mismatch(
    stored: Mapping[str, Any], expected: Mapping[str, Any], shapes_only: bool = False
) -> str | None:
    """Why `stored` weights cannot be loaded (strictly) into a model whose state dict is
    `expected`: the first tensor of another shape, or (unless `shapes_only`) missing/unexpected
    names; None if they fit.
    """
    for key, value in stored.items():
        if key in expected and tuple(value.shape) != tuple(expected[key].shape):
            return (
                f"{key} has shape {list(value.shape)} in the checkpoint but "
                f"{list(expected[key].shape)} in the model"
            )
    if shapes_only:
        return None
    missing = [k for k in expected if k not in stored]
    unexpected = [k for k in stored if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        return "weights " + " and ".join(parts)
    return None


def check_weights_fit(
    stored: Mapping[str, Any], expected: Mapping[str, Any], where: str, shapes_only: bool = False
) -> None:
    """CheckpointError naming `where` when the weights do not fit the model (weights_mismatch)."""
    problem = weights_mismatch(stored, expected, shapes_only)
    if problem is not None:
        raise CheckpointError(f"{where}: the checkpoint's weights do not fit its model ({problem})")
