"""The band-limited model-input upsampler (`upsampler: sinc`), in torch: batched, differentiable.

`sinc_upsample(x, r)` applies `dsp.resample.sinc_kernel(r)` (a Kaiser-windowed sinc whose
stopband starts at the low-res Nyquist) in polyphase form: one conv1d of `2 * SINC_HALF_WIDTH + 1`
taps per output phase over the low-res signal. Unlike the cubic spline (`dsp.cubic`), it leaves no
images of the low-res band above the low-res Nyquist.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor, nn

from audio_superres.dsp.amplitude_phase import float32_region
from audio_superres.dsp.cubic import check_signal
from audio_superres.dsp.numeric import work_dtype
from audio_superres.dsp.resample import SINC_HALF_WIDTH, check_ratio, sinc_kernel

__all__ = ["SincUpsample", "sinc_upsample"]


@lru_cache(maxsize=64)
def _device_weight(ratio: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """conv1d weight `(ratio, 1, 2W + 1)`: output phase p at low-res position k is
    `sum_q weight[p, 0, q] * x[k + q - W]`, i.e. weight[p, 0, q] = h[(W - q) * ratio + p]."""
    r, w = ratio, SINC_HALF_WIDTH
    h = sinc_kernel(r)
    q = np.arange(2 * w + 1)
    index = (w - q)[None, :] * r + np.arange(r)[:, None] + w * r  # into h (centre at w * r)
    valid = index < h.size  # phase p > 0 at q = 0 falls one tap past the end: zero
    weight = np.where(valid, h[np.minimum(index, h.size - 1)], 0.0)
    # cached constants must be ordinary tensors even when first built under inference mode
    with torch.inference_mode(False):
        return torch.as_tensor(weight[:, None, :], dtype=dtype, device=device)


def _reflect_index(m: int, before: int, after: int, device: torch.device) -> Tensor:
    """Indices of `x` (length m >= 1) extended by even reflection about its end samples (no
    repeat of the edge sample, as `np.pad(mode="reflect")`), for any m: reflections repeat."""
    i = torch.arange(-before, m + after, device=device)
    if m == 1:
        return torch.zeros_like(i)
    period = 2 * (m - 1)
    i = torch.remainder(i, period)
    return torch.where(i >= m, period - i, i)


def sinc_upsample(x: Tensor, ratio: int) -> Tensor:
    """Band-limited upsampling of `x` `(..., m)` by the integer `ratio` to `(..., m * ratio)`.

    Low-res sample k sits at high-res position `k * ratio` (as for the cubic spline). The ends are
    extended by even reflection, so a signal of any length m >= 1 is defined and an output sample
    depends only on the input within `SINC_HALF_WIDTH` low-res samples. Computed in float64 (float32
    on MPS) with autocast off, cast back to `x`'s dtype: immune to TF32 and bf16. Linear and
    differentiable; ratio 1 returns `x` itself.
    """
    r = check_ratio(ratio)
    check_signal(x)
    if r == 1:
        return x
    m = x.shape[-1]
    batch = math.prod(x.shape[:-1])
    if m == 0 or batch == 0:
        return x.new_zeros(*x.shape[:-1], m * r)
    device, work, w = x.device, work_dtype(x.device), SINC_HALF_WIDTH
    with float32_region(device):
        flat = x.reshape(batch, 1, m).to(work)
        index = _reflect_index(m, w, w, device)
        if m > w:  # the plain input in the middle, reflected halos only at the ends
            padded = torch.cat([flat[..., index[:w]], flat, flat[..., index[m + w :]]], dim=-1)
        else:
            padded = flat[..., index]
        y = torch.nn.functional.conv1d(padded, _device_weight(r, device, work))  # (B, r, m)
    return y.transpose(1, 2).reshape(*x.shape[:-1], m * r).to(x.dtype)


class SincUpsample(nn.Module):
    """`sinc_upsample` as a parameter-free module (a model's input upsampler, `upsampler: sinc`).

    No parameters or buffers (the filter is cached per device), so a model's state_dict is the
    same with either upsampler; it follows the input's device and dtype.
    """

    def __init__(self, ratio: int) -> None:
        super().__init__()
        self.ratio = check_ratio(ratio)

    @property
    def taps(self) -> int:
        """Low-res samples one output sample combines (for cost counting)."""
        return 2 * SINC_HALF_WIDTH + 1

    # Outside torch.compile graphs, as CubicUpsample: the reflected halo's indices depend on the
    # input length, which would only recompile per length.
    @torch.compiler.disable
    def forward(self, x: Tensor) -> Tensor:
        return sinc_upsample(x, self.ratio)

    def extra_repr(self) -> str:
        return f"ratio={self.ratio}"
