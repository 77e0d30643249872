"""The cubic-spline baseline as a model with no parameters."""

from __future__ import annotations

from torch import Tensor, nn

from audio_superres.dsp.cubic import CubicUpsample


class CubicBaseline(nn.Module):
    """LR `(B, m)` -> the not-a-knot cubic spline at `(B, m * ratio)`; nothing to train."""

    def __init__(self, ratio: int) -> None:
        super().__init__()
        self.ratio = int(ratio)
        self.upsample = CubicUpsample(self.ratio)

    def forward(self, lr: Tensor) -> Tensor:
        return self.upsample(lr)
