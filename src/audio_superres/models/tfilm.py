"""TFiLM: the U-Net with Temporal Feature-wise Linear Modulation (Birnbaum et al. 2019).

REFERENCE section 2: the same U-Net as `AudioUNet`, but every block's activations are scaled
per channel and per block of time by an LSTM that runs over max-pooled blocks, which gives the
convolutions a long-range, sequence-wide context at little cost. Down blocks halve time by
max-pooling after a stride-1 conv, as in the 2019 code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from audio_superres.models.audiounet import AudioUNet, DownBlock, Stage, UpBlock

__all__ = ["PooledDownBlock", "TFiLM", "TFiLMUNet", "tfilm_block_sizes"]


class TFiLM(nn.Module):
    """Temporal FiLM on `(B, C, T)`: split time into blocks of `block_size`, max-pool each block
    to one vector, run an LSTM (hidden size C) over the block sequence and multiply each block's
    features channel-wise by the LSTM output at that block.

    Lengths that are not a multiple of `block_size` are handled as if padded with -inf (the last,
    partial block is pooled over its real samples only) and the scales are cropped back to T.
    """

    def __init__(self, channels: int, block_size: int) -> None:
        super().__init__()
        if block_size < 1:
            raise ValueError(f"TFiLM block_size must be >= 1, got {block_size}")
        self.channels = int(channels)
        self.block_size = int(block_size)
        self.lstm = nn.LSTM(self.channels, self.channels, batch_first=True)

    def block_scales(self, x: Tensor) -> Tensor:
        """The modulation `(B, C, ceil(T / block_size))`: one scale per channel and block."""
        pooled = F.max_pool1d(x, self.block_size, ceil_mode=True)  # partial last block kept
        out, _ = self.lstm(pooled.transpose(1, 2))
        return out.transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        scales = self.block_scales(x).repeat_interleave(self.block_size, dim=-1)
        return x * scales[..., : x.shape[-1]]

    def extra_repr(self) -> str:
        return f"channels={self.channels}, block_size={self.block_size}"


class PooledDownBlock(DownBlock):
    """Conv1d(stride 1, 'same') -> MaxPool1d(2) -> [Dropout] -> LeakyReLU(0.2): TFiLM's down
    block (the 2019 code halves time by max-pooling instead of a strided conv)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int,
        dropout: float = 0.0,
        bias: bool = True,
        *,
        dilation: int = 1,
    ) -> None:
        super().__init__(cin, cout, kernel, dropout, bias, stride=1, dilation=dilation)
        self.pool = nn.MaxPool1d(2)

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(self.dropout(self.pool(self.conv(x))), 0.2)


def tfilm_block_sizes(block_sizes: int | Sequence[int], depth: int) -> list[int]:
    """Block sizes for levels 0 .. depth (level `depth` is the bottleneck).

    An int is the size at level 0 (the first block's output, half the input length), halved at
    each deeper level (never below 1), so every level has the same number of blocks: 128 gives
    32 blocks per level on an 8192-sample patch, each block covering 256 input samples (16 ms
    at 16 kHz), as the 2019 code intended. A list gives every level explicitly.
    """
    if isinstance(block_sizes, int):
        return [max(1, block_sizes // 2**level) for level in range(depth + 1)]
    sizes = [int(b) for b in block_sizes]
    if len(sizes) != depth + 1:
        raise ValueError(
            f"block_sizes {sizes} must have depth + 1 = {depth + 1} entries "
            "(one per down level, then the bottleneck), or be one int for level 0"
        )
    if min(sizes) < 1:
        raise ValueError(f"block_sizes must be >= 1, got {sizes}")
    return sizes


class TFiLMUNet(AudioUNet):
    """`AudioUNet` with a TFiLM layer after each down block, the bottleneck and each up block.

    LR `(B, m)` in, HR `(B, m * ratio)` out, upsampled residual inside, any length (AudioUNet).
    Up block `l` (the one joining the skip of down level `l`) uses that level's block size, so
    skips and up-path features are modulated on the same time grid.

    Args beyond AudioUNet's:
        block_sizes: int (level-0 size, halved per level) or one size per level 0 .. depth.
        pool: halve time by max-pooling after stride-1 convs (the 2019 code); False keeps the
            2017 strided convs, i.e. exactly AudioUNet plus the TFiLM layers.
        dilation: dilation of the down, bottleneck and up convs (the 2019 code used 2).
        upsampler: the input upsampler, "cubic" (the 2017 spline) or "sinc" (see AudioUNet).
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
        block_sizes: int | Sequence[int] = 128,
        pool: bool = True,
        dilation: int = 1,
        upsampler: str = "cubic",
    ) -> None:
        # read by the block factories, which AudioUNet.__init__ calls
        self.pool = bool(pool)
        self.dilation = int(dilation)
        super().__init__(
            ratio,
            filters,
            kernels,
            bottleneck_filters,
            bottleneck_kernel,
            dropout,
            final_kernel,
            bias,
            upsampler,
        )
        filters = list(filters)
        self.block_sizes = tfilm_block_sizes(block_sizes, self.depth)
        self.tfilm_down = nn.ModuleList(
            TFiLM(f, b) for f, b in zip(filters, self.block_sizes[:-1], strict=True)
        )
        self.tfilm_bottleneck = TFiLM(bottleneck_filters, self.block_sizes[-1])
        # in the order of self.up: deepest level first
        self.tfilm_up = nn.ModuleList(
            TFiLM(f, b) for f, b in reversed(list(zip(filters, self.block_sizes[:-1], strict=True)))
        )

    @property
    def chunk_alignment(self) -> int:
        """HR samples of one TFiLM block at every level (level l's features are 2^(l+1) times
        shorter than HR): chunks that start on this grid pool the same blocks as the whole file
        (`inference.hr_alignment`)."""
        align = self.multiple
        for level, b in enumerate(self.block_sizes):
            align = math.lcm(align, b * 2 ** (level + 1))
        return align

    @property
    def context(self) -> int | None:
        """The LSTMs run over the whole input: chunked output approximates whole-file output."""
        return None

    def _make_down_block(
        self, cin: int, cout: int, kernel: int, dropout: float, bias: bool
    ) -> nn.Module:
        if self.pool:
            return PooledDownBlock(cin, cout, kernel, dropout, bias, dilation=self.dilation)
        return DownBlock(cin, cout, kernel, dropout, bias, dilation=self.dilation)

    def _make_up_block(
        self, cin: int, filters: int, kernel: int, dropout: float, bias: bool
    ) -> nn.Module:
        return UpBlock(cin, filters, kernel, dropout, bias, dilation=self.dilation)

    def tfilm_layer(self, stage: Stage, level: int) -> TFiLM:
        """The TFiLM layer applied after the block at (`stage`, `level`)."""
        if stage == "down":
            return self.tfilm_down[level]
        if stage == "bottleneck":
            return self.tfilm_bottleneck
        return self.tfilm_up[self.depth - 1 - level]

    def modulate(self, h: Tensor, stage: Stage, level: int) -> Tensor:
        return self.tfilm_layer(stage, level)(h)
