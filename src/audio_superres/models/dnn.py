"""The fully connected baseline of the 2017 paper (after Li et al. 2015), REFERENCE section 2."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from audio_superres.models.base import UPSAMPLER_CONTEXT, SuperResModel, make_upsampler
from audio_superres.models.layers import reflect_pad_right

__all__ = ["DNNBaseline", "DenseBlock"]


class DenseBlock(nn.Module):
    """Linear -> BatchNorm1d -> LeakyReLU(0.2), plus its input when the widths match (the
    original code's per-layer skip, which keeps deep stacks of equal widths trainable).

    A training batch of a single row has no batch statistics (BatchNorm1d would raise); it is
    normalised with the running statistics instead, as in eval mode, and leaves them unchanged.
    """

    def __init__(self, cin: int, cout: int, skip: bool = True, negative_slope: float = 0.2):
        super().__init__()
        self.linear = nn.Linear(cin, cout)
        self.norm = nn.BatchNorm1d(cout)
        self.negative_slope = negative_slope
        self.skip = skip and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        h = self.linear(x)
        if self.training and h.shape[0] == 1:
            n = self.norm
            h = F.batch_norm(h, n.running_mean, n.running_var, n.weight, n.bias, False, 0.0, n.eps)
        else:
            h = self.norm(h)
        h = F.leaky_relu(h, self.negative_slope)
        return h + x if self.skip else h


class DNNBaseline(SuperResModel):
    """Low-res `(B, m)` in, high-res `(B, m * ratio)` out, through fully connected layers.

    The LR signal is upsampled as a whole (`upsampler`: the 2017 cubic spline, or "sinc", a windowed
    sinc without images above the low-res Nyquist), then cut into fixed patches of `patch_len`
    high-rate samples (the last one reflect-padded, the output cropped back), since dense layers
    need a fixed input size. Each patch goes through `DenseBlock`s of `hidden_sizes` and a last
    Linear back to `patch_len` samples, added to the patch (the additive input skip). Whole
    utterances are therefore processed patch by patch, independently, in this forward: neither
    training nor evaluation code needs to know. The last layer starts near zero (N(0, 1e-3)), so an
    untrained model already equals its upsampled input, as AudioUNet does.
    """

    def __init__(
        self,
        ratio: int,
        patch_len: int = 2048,
        hidden_sizes: Sequence[int] = (1024, 1024, 1024),
        layer_skips: bool = True,
        negative_slope: float = 0.2,
        upsampler: str = "cubic",
    ) -> None:
        super().__init__(ratio)
        if patch_len < 1:
            raise ValueError(f"patch_len must be >= 1, got {patch_len}")
        hidden_sizes = [int(h) for h in hidden_sizes]
        if not hidden_sizes or min(hidden_sizes) < 1:
            raise ValueError(f"hidden_sizes must be a non-empty list of widths, got {hidden_sizes}")
        self.patch_len = int(patch_len)
        # "cubic" by default: checkpoints from before the setting (no key) keep their spline
        self.upsample = make_upsampler(upsampler, self.ratio)
        self.upsampler = upsampler
        widths = [self.patch_len, *hidden_sizes]
        self.blocks = nn.Sequential(
            *(
                DenseBlock(cin, cout, layer_skips, negative_slope)
                for cin, cout in zip(widths[:-1], widths[1:], strict=True)
            )
        )
        self.out = nn.Linear(widths[-1], self.patch_len)
        nn.init.normal_(self.out.weight, std=1e-3)
        nn.init.zeros_(self.out.bias)

    @property
    def chunk_alignment(self) -> int:
        return self.patch_len

    @property
    def context(self) -> int | None:
        """A patch sees all of itself: one patch of LR samples, plus the upsampler's reach."""
        return -(-self.patch_len // self.ratio) + UPSAMPLER_CONTEXT[self.upsampler]

    def forward(self, lr: Tensor) -> Tensor:
        return self.forward_from_cubic(self.upsample(lr))

    def forward_from_cubic(self, cubic: Tensor) -> Tensor:
        """Run the net patch by patch on an already upsampled (`self.upsample`) `(B, n)` signal
        (any n >= 1)."""
        b, n = cubic.shape
        x = reflect_pad_right(cubic.unsqueeze(1), (-n) % self.patch_len).squeeze(1)
        patches = x.reshape(-1, self.patch_len)  # (B * n_patches, patch_len), batch-major
        y = patches + self.out(self.blocks(patches))
        return y.reshape(b, -1)[:, :n]
