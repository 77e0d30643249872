"""Waveform losses. `RMSELoss` is the 2017 code's loss."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class RMSELoss(nn.Module):
    """`sqrt(mean((pred - y)^2) + eps)` per patch, averaged over the batch (the original's loss)."""

    def __init__(self, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        mse = (pred - target).pow(2).flatten(1).mean(dim=1)
        return torch.sqrt(mse + self.eps).mean()


class L1Loss(nn.Module):
    """Mean absolute error over all samples."""

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return (pred - target).abs().mean()


class MSELoss(nn.Module):
    """Mean squared error over all samples."""

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return (pred - target).pow(2).mean()
