"""The cubic-spline baseline: scipy's not-a-knot spline through the low-res samples, in torch.

Reference (REFERENCE section 3): `splev(arange(n), splrep(arange(n)[::r], x))`, n = m * r, with
low-res sample k at high-res position k * r and the last r - 1 positions extrapolated with the
last polynomial piece. The spline is linear in x, so the whole map is a fixed matrix T
`(m * r, m)`. Away from the ends, T is a shift-invariant polyphase filter whose taps decay like
|sqrt(3) - 2|^d (~1e-16 at d = 28), so the interior is that filter, applied as one matmul of
S-sample blocks (plus halo) with a block-Toeplitz `(S + C - 1, S * r)` matrix (an im2col of only
~3x the input); the first and last blocks use exact rows of T computed once for a reference
length.
Short inputs use the exact dense T. Everything is computed in float64 and cast back, which makes
the result immune to TF32 and autocast and matches scipy to ~1e-15 (float64 input).
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor, nn

from audio_superres.dsp.numeric import work_dtype
from audio_superres.dsp.resample import check_ratio

__all__ = ["CubicUpsample", "check_signal", "cubic_upsample", "spline_matrix"]

_K = 28  # taps kept on each side of an interval: |sqrt(3) - 2|^28 ~ 1e-16
_C = 2 * _K + 2  # interior kernel width: x_{j-K} .. x_{j+K+1} for output block j
_M_REF = 2 * _C + 4  # reference length the edge rows are taken from (ends ~2K apart)
_DENSE_BELOW = 2 * _C  # shorter inputs use the exact dense matrix
_S = 32  # low-res samples per block of the interior matmul (fastest on CPU; any S is exact)


def check_signal(x: Tensor) -> None:
    """Raise unless `x` is a floating-point tensor of shape `(..., m)` (an upsampler's input)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"expected a floating-point signal, got dtype {x.dtype}")
    if x.ndim == 0:
        raise ValueError("expected a signal of shape (..., m), got a 0-d tensor")


def _polynomial_matrix(m: int, ratio: int) -> np.ndarray:
    """Lagrange interpolation through m < 4 points (scipy's splrep needs m >= 4).

    Degree m - 1 (constant, line, parabola): what a not-a-knot cubic spline degenerates to, and
    what `scipy.interpolate.CubicSpline(bc_type="not-a-knot")` returns for 2 or 3 points.
    """
    u = np.arange(m * ratio, dtype=np.float64) / ratio
    T = np.ones((m * ratio, m))
    for i in range(m):
        for j in range(m):
            if j != i:
                T[:, i] *= (u - j) / (i - j)
    return T


def spline_matrix(m: int, ratio: int) -> np.ndarray:
    """The exact float64 matrix T `(m * ratio, m)` with `cubic_upsample(x) == T @ x`.

    Moments M_i = S''(i) (knot spacing 1) solve M_{i-1} + 4 M_i + M_{i+1} = 6 (x_{i-1} - 2 x_i +
    x_{i+1}) inside, with not-a-knot rows M_0 - 2 M_1 + M_2 = 0 and the mirror at the end. On
    [i, i+1], S(i + u) = M_i ((1-u)^3 - (1-u)) / 6 + M_{i+1} (u^3 - u) / 6 + x_i (1-u) + x_{i+1} u,
    and block j (outputs j*r .. j*r + r - 1) uses piece min(j, m - 2), extrapolating the last.
    """
    r = check_ratio(ratio)
    if m < 0:
        raise ValueError(f"length must be >= 0, got {m}")
    if m < 4:
        return _polynomial_matrix(m, r)
    A = np.zeros((m, m))
    D = np.zeros((m, m))
    A[0, :3] = A[-1, -3:] = (1.0, -2.0, 1.0)
    rows = np.arange(1, m - 1)
    for offset, a, d in ((-1, 1.0, 6.0), (0, 4.0, -12.0), (1, 1.0, 6.0)):
        A[rows, rows + offset] = a
        D[rows, rows + offset] = d
    P = np.linalg.solve(A, D)  # moments = P @ x
    j = np.arange(m)
    piece = np.minimum(j, m - 2)
    u = (j - piece)[:, None] + np.arange(r)[None, :] / r  # (m, r), u >= 1 only when extrapolating
    v = 1.0 - u
    w_m0 = (v**3 - v) / 6
    w_m1 = (u**3 - u) / 6
    T = w_m0[..., None] * P[piece][:, None, :] + w_m1[..., None] * P[piece + 1][:, None, :]
    T[j, :, piece] += v
    T[j, :, piece + 1] += u
    return T.reshape(m * r, m)


@lru_cache(maxsize=16)
def _edge_kernels(ratio: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(left (C, K*r), interior block-Toeplitz (S+C-1, S*r), right (C, (K+1)*r)) from exact T."""
    T = spline_matrix(_M_REF, ratio)
    j0 = _M_REF // 2
    left = T[: _K * ratio, :_C].T
    mid = T[j0 * ratio : (j0 + 1) * ratio, j0 - _K : j0 + _K + 2].T  # (C, r)
    right = T[(_M_REF - _K - 1) * ratio :, _M_REF - _C :].T
    toeplitz = np.zeros((_S + _C - 1, _S, ratio))
    for s in range(_S):
        toeplitz[s : s + _C, s, :] = mid
    toeplitz = toeplitz.reshape(_S + _C - 1, _S * ratio)
    return np.ascontiguousarray(left), toeplitz, np.ascontiguousarray(right)


@lru_cache(maxsize=64)
def _device_kernels(
    ratio: int, device: torch.device, dtype: torch.dtype
) -> tuple[Tensor, Tensor, Tensor]:
    left, toeplitz, right = _edge_kernels(ratio)
    # Cached constants must be ordinary tensors even when first built under inference mode
    # (Lightning validates under it), or a later autograd use of them would fail.
    with torch.inference_mode(False):
        return (
            torch.as_tensor(left, dtype=dtype, device=device),
            torch.as_tensor(toeplitz, dtype=dtype, device=device),
            torch.as_tensor(right, dtype=dtype, device=device),
        )


@lru_cache(maxsize=64)
def _device_dense(m: int, ratio: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    dense_t = np.ascontiguousarray(spline_matrix(m, ratio).T)
    with torch.inference_mode(False):  # see _device_kernels
        return torch.as_tensor(dense_t, dtype=dtype, device=device)


def cubic_upsample(x: Tensor, ratio: int) -> Tensor:
    """Not-a-knot cubic spline upsampling of `x` `(..., m)` to `(..., m * ratio)`.

    Matches `splev(arange(n), splrep(arange(n)[::ratio], x))` (n = m * ratio) for m >= 4;
    m < 4 (which scipy refuses) gives the interpolating polynomial of degree m - 1. Linear and
    differentiable; ratio 1 returns `x` itself.
    """
    r = check_ratio(ratio)
    check_signal(x)
    if r == 1:
        return x
    m = x.shape[-1]
    device = x.device
    work = work_dtype(device)
    flat = x.reshape(math.prod(x.shape[:-1]), m).to(work)  # also fine for m == 0
    no_autocast = (
        torch.autocast(device.type, enabled=False)
        if torch.amp.is_autocast_available(device.type)
        else nullcontext()
    )
    with no_autocast:
        if m < _DENSE_BELOW:
            y = flat @ _device_dense(m, r, device, work)
        else:
            left, toeplitz, right = _device_kernels(r, device, work)
            n_mid = m - _C + 1  # output blocks K .. m-K-2 see a full window x[j-K : j+K+2]
            n_blocks = -(-n_mid // _S)
            padded = torch.nn.functional.pad(flat, (0, n_blocks * _S - n_mid))
            # explicit 2-D reshape: one compact copy + mm (a 3-D matmul would clone per row)
            mid = padded.unfold(-1, _S + _C - 1, _S).reshape(-1, _S + _C - 1) @ toeplitz
            y = torch.cat(
                [
                    flat[:, :_C] @ left,
                    mid.reshape(flat.shape[0], n_blocks * _S * r)[:, : n_mid * r],
                    flat[:, m - _C :] @ right,
                ],
                dim=-1,
            )
    return y.to(x.dtype).reshape(*x.shape[:-1], m * r)


class CubicUpsample(nn.Module):
    """`cubic_upsample` as a parameter-free module: the baseline and the U-Net's residual path.

    It holds no parameters or buffers (constants are cached per device), so it adds nothing to
    checkpoints and follows the input's device and dtype.
    """

    def __init__(self, ratio: int) -> None:
        super().__init__()
        self.ratio = check_ratio(ratio)

    # Outside torch.compile graphs: an exact float64 spline built from cached constants, a small
    # fraction of any network's cost; tracing it would only recompile per input length.
    @torch.compiler.disable
    def forward(self, x: Tensor) -> Tensor:
        return cubic_upsample(x, self.ratio)

    def extra_repr(self) -> str:
        return f"ratio={self.ratio}"
