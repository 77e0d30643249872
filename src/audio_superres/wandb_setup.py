"""W&B without surprises: offline by itself when no key is configured, never a login prompt."""

from __future__ import annotations

import netrc
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse


def wandb_has_credentials() -> bool:
    """True when an API key is set in the environment or stored by `wandb login` (~/.netrc)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or ""
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return path.is_file() and netrc.netrc(str(path)).authenticators(host) is not None
    except (netrc.NetrcParseError, OSError):
        return False


def wandb_mode() -> str | None:
    """The mode to force: None when WANDB_MODE is set (it always wins) or credentials exist."""
    if os.environ.get("WANDB_MODE"):
        return None
    return None if wandb_has_credentials() else "offline"


def make_wandb_logger(
    project: str = "audio_superres",
    save_dir: str = ".",
    name: str | None = None,
    group: str | None = None,
    tags: Sequence[str] | None = None,
    job_type: str | None = None,
    **kwargs: Any,
):
    """A Lightning `WandbLogger` that goes offline by itself when no key is configured."""
    from lightning.pytorch.loggers import WandbLogger

    os.makedirs(save_dir, exist_ok=True)
    mode = wandb_mode()
    if mode is not None:
        kwargs.setdefault("mode", mode)
    logger = WandbLogger(
        project=project,
        save_dir=save_dir,
        name=name,
        group=group,
        tags=list(tags or []),
        job_type=job_type,
        **kwargs,
    )
    # Lightning passes `anonymous=None` to wandb.init, and wandb 0.2x warns on every run that
    # "the anonymous setting has no effect": leave the setting out unless it was asked for.
    init_args = getattr(logger, "_wandb_init", None)
    if isinstance(init_args, dict) and init_args.get("anonymous") is None:
        init_args.pop("anonymous", None)
    return logger
