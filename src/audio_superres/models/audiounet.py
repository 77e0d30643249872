"""The 1-D U-Net of Kuleshov, Enam & Ermon (2017), as in the original code (REFERENCE section 2)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from audio_superres.models.base import UPSAMPLER_CONTEXT, SuperResModel, make_upsampler
from audio_superres.models.layers import (
    SubPixel1d,
    orthogonal_init_,
    reflect_pad_right,
    same_padding_conv1d,
)

Stage = Literal["down", "bottleneck", "up"]


class DownBlock(nn.Module):
    """Conv1d(stride 2, 'same') -> [Dropout] -> LeakyReLU(0.2).

    `stride` and `dilation` exist for subclasses (TFiLM's pooled blocks); the U-Net uses 2 and 1.
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int,
        dropout: float = 0.0,
        bias: bool = True,
        *,
        stride: int = 2,
        dilation: int = 1,
    ):
        super().__init__()
        self.conv = orthogonal_init_(
            same_padding_conv1d(cin, cout, kernel, stride=stride, bias=bias, dilation=dilation)
        )
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(self.dropout(self.conv(x)), 0.2)


class UpBlock(nn.Module):
    """Conv1d(2f, 'same') -> Dropout -> ReLU -> SubPixel1D(2): doubles time, halves channels."""

    def __init__(
        self,
        cin: int,
        filters: int,
        kernel: int,
        dropout: float = 0.5,
        bias: bool = True,
        *,
        dilation: int = 1,
    ):
        super().__init__()
        self.conv = orthogonal_init_(
            same_padding_conv1d(cin, 2 * filters, kernel, bias=bias, dilation=dilation)
        )
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.subpixel = SubPixel1d(2)

    def forward(self, x: Tensor) -> Tensor:
        return self.subpixel(F.relu(self.dropout(self.conv(x))))


class AudioUNet(SuperResModel):
    """Low-res waveform `(B, m)` in, high-res `(B, m * ratio)` out.

    The input upsampler is the network's first layer (the 2017 cubic spline, or with
    `upsampler="sinc"` a windowed sinc without images above the low-res Nyquist); the net predicts
    a residual over it. The last conv starts near zero (N(0, 1e-3)), so an untrained model
    already equals its upsampled input.
    Inputs of any length are reflect-padded to a multiple of 2^(depth+1) and cropped back.

    Subclasses (e.g. `TFiLMUNet`) change the blocks through `_make_down_block` /
    `_make_up_block` and act on every block's output through `modulate`; here both are the
    paper's, so the network, its parameters and its state_dict keys are the 2017 ones.
    """

    def __init__(
        self,
        ratio: int,
        filters: Sequence[int] = (128, 384, 512, 512),
        kernels: Sequence[int] = (65, 33, 17, 9),
        bottleneck_filters: int = 512,
        bottleneck_kernel: int = 9,
        dropout: float = 0.5,
        final_kernel: int = 9,
        bias: bool = True,
        upsampler: str = "cubic",
    ) -> None:
        super().__init__(ratio)
        filters, kernels = list(filters), list(kernels)
        if len(filters) != len(kernels) or not filters:
            raise ValueError(
                f"filters {filters} and kernels {kernels} must be non-empty lists of equal length"
            )
        self.depth = len(filters)
        self.kernels = kernels
        self.bottleneck_kernel = int(bottleneck_kernel)
        self.final_kernel = int(final_kernel)
        # "cubic" by default: checkpoints from before the setting (no key) keep their spline
        self.upsample = make_upsampler(upsampler, self.ratio)
        self.upsampler = upsampler

        self.down = nn.ModuleList()
        cin = 1
        for f, k in zip(filters, kernels, strict=True):
            self.down.append(self._make_down_block(cin, f, k, 0.0, bias))
            cin = f
        self.bottleneck = self._make_down_block(
            cin, bottleneck_filters, bottleneck_kernel, dropout, bias
        )

        self.up = nn.ModuleList()
        cin = bottleneck_filters
        for f, k in reversed(list(zip(filters, kernels, strict=True))):
            self.up.append(self._make_up_block(cin, f, k, dropout, bias))
            cin = 2 * f  # subpixel output (f) concatenated with the skip (f)
        self.final = same_padding_conv1d(cin, 2, final_kernel, bias=bias)
        nn.init.normal_(self.final.weight, std=1e-3)
        if self.final.bias is not None:
            nn.init.zeros_(self.final.bias)
        self.final_subpixel = SubPixel1d(2)

    def _make_down_block(
        self, cin: int, cout: int, kernel: int, dropout: float, bias: bool
    ) -> nn.Module:
        """One block halving time (the down blocks and the bottleneck); overridable."""
        return DownBlock(cin, cout, kernel, dropout, bias)

    def _make_up_block(
        self, cin: int, filters: int, kernel: int, dropout: float, bias: bool
    ) -> nn.Module:
        """One block doubling time, `cin` -> `filters` channels; overridable."""
        return UpBlock(cin, filters, kernel, dropout, bias)

    def modulate(self, h: Tensor, stage: Stage, level: int) -> Tensor:
        """Hook on each block's output `(B, C, T)` before it is stored as a skip or concatenated.

        `level` is the down level whose resolution `h` has (the bottleneck is level `depth`).
        The identity here; `TFiLMUNet` applies its Temporal FiLM layers.
        """
        return h

    @property
    def multiple(self) -> int:
        """High-res lengths the convolutional stack takes without padding."""
        return 2 ** (self.depth + 1)

    @property
    def chunk_alignment(self) -> int:
        return self.multiple

    @property
    def context(self) -> int | None:
        """Receptive-field radius in LR samples: each conv adds (kernel - 1) / 2 samples at the
        resolution it runs at (down level l: 2^l HR samples, the bottleneck 2^depth, up level l:
        2^(l+2), since it runs on the level below's output, the final conv 2), plus `multiple` HR
        samples for the phase offsets of the strides and sub-pixel shuffles, plus the input
        upsampler's reach. Measured with an impulse in `tests/models/test_contract.py`."""
        down = sum((k - 1) // 2 * 2**level for level, k in enumerate(self.kernels))
        bottleneck = (self.bottleneck_kernel - 1) // 2 * 2**self.depth
        up = sum((k - 1) // 2 * 2 ** (level + 2) for level, k in enumerate(self.kernels))
        final = (self.final_kernel - 1) // 2 * 2
        hr = down + bottleneck + up + final + self.multiple
        return -(-hr // self.ratio) + UPSAMPLER_CONTEXT[self.upsampler]

    def forward(self, lr: Tensor) -> Tensor:
        return self.forward_from_cubic(self.upsample(lr))

    def forward_from_cubic(self, cubic: Tensor) -> Tensor:
        """Run the net on an already upsampled `(B, n)` signal (any n >= 2): `self.upsample`'s
        output, the cubic spline's unless `upsampler="sinc"` (the name is the 2017 one)."""
        n = cubic.shape[-1]
        x = reflect_pad_right(cubic.unsqueeze(1), (-n) % self.multiple)
        skips = []
        h = x
        for level, block in enumerate(self.down):
            h = self.modulate(block(h), "down", level)
            skips.append(h)
        h = self.modulate(self.bottleneck(h), "bottleneck", self.depth)
        levels = reversed(range(self.depth))
        for level, block, skip in zip(levels, self.up, reversed(skips), strict=True):
            h = torch.cat([self.modulate(block(h), "up", level), skip], dim=1)
        h = self.final_subpixel(self.final(h))
        return (h + x)[:, 0, :n]
