"""Which arithmetic to run a model in: `precision=auto|32|bf16` for train.py, evaluate.py and
upsample.py.

`auto` (the default) uses bf16 autocast only where the device computes bf16 natively: a CUDA GPU
with bf16 support, or a CPU with AMX-BF16 or AVX512-BF16 units (detected at run time). Everywhere
else it is float32, since emulated bf16 is slower than float32 and gains nothing. Under bf16 the
model's convolutions and matrix products run in bf16; the regions that need the range or the
precision of float32 stay in it whatever autocast says: the cubic spline and the low-pass
filters (float64), the STFTs, logs, exps and `atan2` of AP-BWE and of the spectral losses, the
discriminators' spectrograms, and every metric (computed on the float32 output).

Leaf module: imports only torch and `errors`.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from audio_superres.errors import ConfigError

__all__ = [
    "PRECISIONS",
    "accelerator_device",
    "lightning_precision",
    "PrecisionChoice",
    "autocast",
    "choose_precision",
    "cpu_bf16_units",
    "normalise_precision",
]

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "32", "bf16")
_ALIASES = {
    "auto": "auto",
    "32": "32",
    "32-true": "32",
    "fp32": "32",
    "float32": "32",
    "bf16": "bf16",
    "bf16-mixed": "bf16",
    "bfloat16": "bf16",
}


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a run uses (`"32"` or `"bf16"`) and, in words, why."""

    name: str
    reason: str

    @property
    def lightning(self) -> str:
        """The Trainer's `precision` for this choice."""
        return "bf16-mixed" if self.name == "bf16" else "32-true"

    def describe(self) -> str:
        what = "bf16 autocast" if self.name == "bf16" else "float32"
        return f"precision: {what} ({self.reason})"


def normalise_precision(value: object, setting: str = "precision") -> str:
    """`auto`, `32` or `bf16` from any accepted spelling (Lightning's `32-true`, `bf16-mixed`)."""
    key = str(value).strip().lower()
    if key not in _ALIASES:
        raise ConfigError(
            f"{setting} must be one of auto, 32, bf16 (or 32-true, bf16-mixed); got {value!r}"
        )
    return _ALIASES[key]


@lru_cache(maxsize=1)
def cpu_bf16_units() -> str | None:
    """The CPU's native bf16 units ("AMX-BF16" or "AVX512-BF16"), or None when it has neither."""
    check = getattr(torch, "cpu", None)
    try:
        if check is not None and getattr(check, "_is_amx_tile_supported", lambda: False)():
            return "AMX-BF16"
        if check is not None and getattr(check, "_is_avx512_bf16_supported", lambda: False)():
            return "AVX512-BF16"
    except RuntimeError:  # a torch built without cpuinfo
        pass
    try:  # Linux without torch's check: the kernel's flags
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    flags = next(
        (line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")),
        [],
    )
    if "amx_bf16" in flags:
        return "AMX-BF16"
    if "avx512_bf16" in flags:
        return "AVX512-BF16"
    return None


def choose_precision(requested: object, device: torch.device | str) -> PrecisionChoice:
    """Resolve `requested` (auto, 32, bf16) for `device`; the reason says which rule decided."""
    name = normalise_precision(requested)
    device = torch.device(device)
    if name == "32":
        return PrecisionChoice("32", "asked for")
    if name == "bf16":
        return PrecisionChoice("bf16", "asked for")
    if device.type == "cuda":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            name = torch.cuda.get_device_name(device)
            return PrecisionChoice("bf16", f"auto: {name} computes bf16")
        return PrecisionChoice("32", "auto: this GPU has no bf16 support")
    if device.type == "cpu":
        units = cpu_bf16_units()
        if units:
            return PrecisionChoice("bf16", f"auto: the CPU computes bf16 natively ({units})")
        return PrecisionChoice(
            "32",
            "auto: the CPU has no native bf16 units (AMX-BF16, AVX512-BF16)",
        )
    return PrecisionChoice("32", f"auto: no bf16 rule for device {device.type}")


def accelerator_device(accelerator: object) -> torch.device:
    """The device Lightning's `accelerator` setting (auto, cpu, gpu, cuda, mps) trains on."""
    name = str(accelerator or "auto").lower()
    if name in ("gpu", "cuda") or (name == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    if name == "mps":
        return torch.device("mps")
    return torch.device("cpu")


def lightning_precision(precision: object, accelerator: object = "auto") -> str:
    """The Trainer's `precision` for ours (auto, 32, bf16) on `accelerator`'s device; any other
    value (e.g. Lightning's 16-mixed) as it is. The resolver of `conf/trainer/default.yaml`, so
    a Trainer built straight from the config gets a value Lightning accepts."""
    try:
        return choose_precision(precision, accelerator_device(accelerator)).lightning
    except ConfigError:
        return str(precision)


def autocast(
    device: torch.device | str, precision: str | PrecisionChoice
) -> contextlib.AbstractContextManager:
    """bf16 autocast on `device` for bf16; for 32, autocast switched off (float32 even inside a
    caller's autocast region). `auto` is resolved for `device` first."""
    device = torch.device(device)
    if not isinstance(precision, PrecisionChoice):
        precision = choose_precision(precision, device)
    if not torch.amp.is_autocast_available(device.type):
        return contextlib.nullcontext()
    if precision.name == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)
