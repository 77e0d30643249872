"""The cubic-spline baseline as a model with no parameters."""

from __future__ import annotations

from torch import Tensor

from audio_superres.dsp.cubic import CubicUpsample
from audio_superres.models.base import CUBIC_CONTEXT, SuperResModel


class CubicBaseline(SuperResModel):
    """LR `(B, m)` -> the not-a-knot cubic spline at `(B, m * ratio)`; nothing to train."""

    def __init__(self, ratio: int) -> None:
        super().__init__(ratio)
        self.upsample = CubicUpsample(self.ratio)

    chunk_alignment = 1
    context = CUBIC_CONTEXT

    def forward(self, lr: Tensor) -> Tensor:
        return self.upsample(lr)
