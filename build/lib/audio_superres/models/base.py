"""The one interface every super-resolution model implements.

A model is a plain `nn.Module` that maps a low-res waveform `(B, m)` to high-res `(B, m * ratio)`
for any `m >= 1`. Around that, chunked inference (`audio_superres.inference`) and the
LightningModule need three facts, which every model declares here rather than by duck typing:

- `ratio`: HR rate / LR rate; the task checks it against its own.
- `chunk_alignment`: HR samples. Chunk starts fall on multiples of it, so a strided or patched
  network sees every chunk at the same phase as the whole file (1 for a model without a grid).
- `context`: LR samples of input each side that one output sample depends on (the receptive
  field's radius, cubic spline included), or `None` when the model looks at the whole input
  (e.g. an LSTM over time). Chunked inference keeps at least this much discarded context at
  every chunk edge, so chunked output equals whole-file output where `context` is finite.

Adding a model: subclass `SuperResModel`, implement `forward`, `chunk_alignment` and `context`,
and add `conf/model/<name>.yaml` with `_target_` and `ratio: ${ratio}` (see docs/models.md).
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod

from torch import Tensor, nn

# The not-a-knot cubic spline's influence decays by ~0.268 per knot: 16 knots is < 1e-9.
CUBIC_CONTEXT = 16


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
