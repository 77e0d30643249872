"""The benchmarks' output format: one JSON line per figure, flushed at once."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["emit"]


def emit(record: dict[str, Any]) -> dict[str, Any]:
    """Print one JSON line (the benchmark's output format) and return the record."""
    print(json.dumps(record), flush=True)
    return record
