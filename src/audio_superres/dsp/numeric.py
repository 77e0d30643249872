"""The arithmetic of the DSP reference paths (filters, the cubic spline, the sinc resampler)."""

from __future__ import annotations

import torch


def work_dtype(device: torch.device) -> torch.dtype:
    """float64, whatever the autocast region: it keeps r=8 filters (poles close to the unit
    circle) within 1e-6 of scipy and the spline/sinc exact to their references. MPS has no
    float64, so it gets float32 (best effort)."""
    return torch.float32 if device.type == "mps" else torch.float64
