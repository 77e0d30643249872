"""The one interface every super-resolution model implements.

A model is a plain `nn.Module` that maps a low-res waveform `(B, m)` to high-res `(B, m * ratio)`
for any `m >= 1`. Around that, chunked inference (`audio_superres.inference`) and the
LightningModule need three facts, which every model declares here rather than by duck typing:

- `ratio`: HR rate / LR rate; the task checks it against its own.
- `chunk_alignment`: HR samples. Chunk starts fall on multiples of it, so a strided or patched
  network sees every chunk at the same phase as the whole file (1 for a model without a grid).
- `context`: LR samples of input each side that one output sample depends on (the receptive
  field's radius, the input upsampler included: `UPSAMPLER_CONTEXT`), or `None` when the model
  looks at the whole input (e.g. an LSTM over time). Chunked inference keeps at least this much
  discarded context at every chunk edge, so chunked output equals whole-file output where
  `context` is finite.

Adding a model: subclass `SuperResModel`, implement `forward`, `chunk_alignment` and `context`,
and add `conf/model/<name>.yaml` with `_target_` and `ratio: ${ratio}` (see docs/models.md).
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod

from torch import Tensor, nn

from audio_superres.dsp.cubic import CubicUpsample
from audio_superres.dsp.resample import SINC_HALF_WIDTH
from audio_superres.dsp.sinc import SincUpsample

__all__ = [
    "CUBIC_CONTEXT",
    "SINC_CONTEXT",
    "UPSAMPLERS",
    "UPSAMPLER_CONTEXT",
    "SuperResModel",
    "make_upsampler",
]

# The not-a-knot cubic spline's influence decays by ~0.268 per knot: 16 knots is < 1e-9.
CUBIC_CONTEXT = 16
# The windowed sinc's taps end SINC_HALF_WIDTH low-res samples from the output sample: exact reach.
SINC_CONTEXT = SINC_HALF_WIDTH

# The input upsamplers a model may put before its network (`upsampler:` in conf/model/*.yaml):
# "cubic", the 2017 not-a-knot spline (with its images above the low-res Nyquist), and "sinc",
# a Kaiser-windowed sinc whose stopband starts at the low-res Nyquist (no images; docs/models.md).
UPSAMPLERS = {"cubic": CubicUpsample, "sinc": SincUpsample}
UPSAMPLER_CONTEXT = {"cubic": CUBIC_CONTEXT, "sinc": SINC_CONTEXT}  # LR samples each side


def make_upsampler(name: str, ratio: int) -> nn.Module:
    """The input upsampler called `name` ("cubic" or "sinc") at `ratio`: a parameter-free module
    `(B, m) -> (B, m * ratio)` (so a state_dict does not depend on the choice)."""
    if name not in UPSAMPLERS:
        raise ValueError(f"upsampler must be one of {sorted(UPSAMPLERS)}, got {name!r}")
    return UPSAMPLERS[name](ratio)


class SuperResModel(nn.Module, metaclass=ABCMeta):
    """LR `(B, m)` -> HR `(B, m * ratio)`, for any length `m >= 1`.

    Abstract members: a model that forgets to declare one cannot be built.
    """

    def __init__(self, ratio: int) -> None:
        super().__init__()
        ratio = int(ratio)
        if ratio < 1:
            raise ValueError(f"ratio must be a positive integer, got {ratio}")
        self.ratio = ratio

    @property
    @abstractmethod
    def chunk_alignment(self) -> int:
        """HR samples: chunk starts on multiples of this see the whole file's grid."""

    @property
    @abstractmethod
    def context(self) -> int | None:
        """LR samples each side one output sample depends on; None for the whole input."""

    @abstractmethod
    def forward(self, lr: Tensor) -> Tensor:
        """`(B, m)` low-res -> `(B, m * ratio)` high-res."""
