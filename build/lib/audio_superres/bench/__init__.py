"""Every benchmark, one command: `python -m audio_superres.bench ...` (`make bench`).

`main` is the command (`bench/cli.py`); the figures live in core.py (peak, model, loader, infer,
prepare), inference.py (stream, seams), upsample.py (upsample) and prepare.py (cache). Resolved
lazily, so `python -m audio_superres.bench.upsample` does not import the rest first.
"""

from __future__ import annotations

from typing import Any

__all__ = ["forward_gflop_per_audio_second", "main", "machine_peak"]


def __getattr__(name: str) -> Any:
    if name == "main":
        from audio_superres.bench.cli import main

        return main
    if name in ("forward_gflop_per_audio_second", "machine_peak"):
        from audio_superres.bench import core

        return getattr(core, name)
    raise AttributeError(f"module 'audio_superres.bench' has no attribute {name!r}")
