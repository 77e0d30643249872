"""Layers shared by the U-Net family."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def subpixel1d(x: Tensor, r: int) -> Tensor:
    """Rearrange `(B, C*r, W)` into `(B, C, W*r)`, as the 2017 code's SubPixel1D.

    The original transposes to put channels first and calls `batch_to_space_nd`, so output
    channel `c` at time `w*r + i` comes from input channel `i*C + c` at time `w`.
    """
    b, cr, w = x.shape
    if cr % r:
        raise ValueError(f"subpixel1d: {cr} channels are not divisible by r={r}")
    c = cr // r
    return x.view(b, r, c, w).permute(0, 2, 3, 1).reshape(b, c, w * r)


class SubPixel1d(nn.Module):
    """Module form of `subpixel1d` (channels -> time), the upsampling of the U-Net's up blocks."""

    def __init__(self, r: int = 2) -> None:
        super().__init__()
        self.r = r

    def forward(self, x: Tensor) -> Tensor:
        return subpixel1d(x, self.r)

    def extra_repr(self) -> str:
        return f"r={self.r}"


def same_padding_conv1d(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    bias: bool = True,
    dilation: int = 1,
) -> nn.Conv1d:
    """Conv1d with TensorFlow 'same' output length (ceil(L / stride)) for odd kernels."""
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel sizes must be odd for 'same' padding, got {kernel_size}")
    return nn.Conv1d(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=dilation * (kernel_size // 2),
        dilation=dilation,
        bias=bias,
    )


def reflect_pad_right(x: Tensor, pad: int) -> Tensor:
    """Reflect-pad the last axis of `(B, C, T)` on the right by `pad`, even when `pad >= T`.

    `F.pad(mode="reflect")` needs pad < T; very short inputs are reflected repeatedly instead.
    """
    n = x.shape[-1]
    while x.shape[-1] - n < pad:
        step = min(pad - (x.shape[-1] - n), x.shape[-1] - 1)
        if step < 1:  # a single sample cannot be reflected: repeat it
            return F.pad(x, (0, pad - (x.shape[-1] - n)), mode="replicate")
        x = F.pad(x, (0, step), mode="reflect")
    return x


def orthogonal_init_(conv: nn.Conv1d) -> nn.Conv1d:
    """Orthogonal weights and zero biases (the 2017 code's `orthogonal_init`)."""
    nn.init.orthogonal_(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


@torch.no_grad()
def count_parameters(module: nn.Module) -> int:
    """Number of parameter values (shared parameters counted once)."""
    return sum(p.numel() for p in module.parameters())
