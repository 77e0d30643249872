"""Errors a user can fix, and how the command-line entry points show them.

A research run that stops on a corrupt file, a missing folder or a checkpoint of another ratio
should say so in one line naming the file and the problem, not in a 40-line traceback through
Lightning. Exceptions of these classes carry such a line; `run_task` prints it (and exits with
status 1) in a single run, and lets it propagate in a multirun so that Hydra records the job as
failed and goes on with the others. Anything else is a bug and keeps its full traceback.
The classes also derive from the built-in type a caller would expect (ValueError, OSError, ...).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

__all__ = [
    "ConfigError",
    "DataError",
    "INTERRUPTED",
    "OutputError",
    "PathNotFoundError",
    "UserFacingError",
    "config_errors",
    "one_line",
    "run_task",
]

log = logging.getLogger(__name__)
R = TypeVar("R")
INTERRUPTED_STATUS = 130  # what a shell reports for a command stopped by Ctrl-C (128 + SIGINT)
INTERRUPTED = (
    "stopped by Ctrl-C; every file already written is complete (each is written to a "
    "temporary name and renamed into place) and nothing half-written remains"
)


class UserFacingError(Exception):
    """A problem with the user's input, config or machine; its message is the whole story."""


class ConfigError(UserFacingError, ValueError):
    """A config value that cannot work (ratio vs. model, patch length, unknown option...)."""


class DataError(UserFacingError, ValueError):
    """A corpus that cannot be used as asked (layout, speakers, no usable file)."""


class PathNotFoundError(UserFacingError, FileNotFoundError):
    """A file or folder the run needs does not exist."""


class OutputError(UserFacingError, OSError):
    """An output that cannot be written: disk full, read-only or not a directory."""


def one_line(exc: BaseException) -> str:
    """The message of `exc` on one line (first line; the type name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _is_multirun() -> bool:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    except (ImportError, ValueError):
        return False


def run_task(task: Callable[[Any], R], cfg: Any) -> R:
    """Run a Hydra task function; a UserFacingError becomes one line on stderr and exit 1.

    In a multirun the error is logged and re-raised, so that Hydra marks that job as failed
    while the sweep runs every other job. HYDRA_FULL_ERROR=1 keeps the full traceback.
    Ctrl-C (KeyboardInterrupt) is one line too, `Interrupted: <what was finished>` (the
    interrupt's own message when the task gave one, else `INTERRUPTED`), exit status 130.
    A required setting left unset (`???` in the config, e.g. upsample.py without input=) is a
    ConfigError naming it.
    """
    from omegaconf.errors import MissingMandatoryValue

    try:
        try:
            return task(cfg)
        except MissingMandatoryValue as exc:
            key = getattr(exc, "full_key", None) or "a required setting"
            raise ConfigError(f"{key} is not set: pass {key}=... (it has no default)") from exc
    except KeyboardInterrupt as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"Interrupted: {one_line(exc) if str(exc).strip() else INTERRUPTED}",
              file=sys.stderr)  # fmt: skip
        raise SystemExit(INTERRUPTED_STATUS) from None
    except UserFacingError as exc:
        message = one_line(exc)
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise  # the developer asked for the whole traceback
        if _is_multirun():
            log.error("%s", message)
            raise
        raise SystemExit(f"Error: {message}") from None


@contextmanager
def config_errors(what: str) -> Iterator[None]:
    """Turn a ValueError/TypeError raised while building `what` from the config into a
    ConfigError naming the config key, so a bad setting stops the run before training starts
    with one line instead of Hydra's multi-line InstantiationException."""
    from hydra.errors import InstantiationException
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    # Lightning's refusals of a setting (accelerator=gpu without CUDA, ...) are config errors too
    setting_errors = (InstantiationException, ValueError, TypeError, MisconfigurationException)
    try:
        yield
    except UserFacingError:
        raise
    except setting_errors as exc:
        cause: BaseException = exc
        key = what
        if isinstance(exc, InstantiationException):
            found = re.search(r"^full_key: (\S+)", str(exc), re.M)
            key = found.group(1) if found else what
            cause = exc.__cause__ or exc
            while isinstance(cause, InstantiationException) and cause.__cause__ is not None:
                cause = cause.__cause__  # a config built inside a config: the innermost error
            if isinstance(cause, UserFacingError):
                raise cause from exc
        if not isinstance(cause, setting_errors):
            raise
        raise ConfigError(f"invalid config ({key}): {one_line(cause)}") from exc
