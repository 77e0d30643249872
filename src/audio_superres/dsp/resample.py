"""Resampling: file decoding to the corpus rate (`resample_audio`, once, when caching) and the
filter of the band-limited integer-ratio upsampler a model may take its input through
(`sinc_kernel`, applied in torch by `dsp.sinc.SincUpsample`).

Both are Kaiser-windowed sinc low-pass filters applied in polyphase form. This module stays
numpy/scipy only (no torch), so preparing a corpus does not load torch.
"""

from __future__ import annotations

import operator
from functools import lru_cache
from math import gcd

import numpy as np
from scipy.signal import resample_poly

__all__ = [
    "SINC_BETA",
    "SINC_HALF_WIDTH",
    "SINC_PASSBAND",
    "check_ratio",
    "resample_audio",
    "sinc_kernel",
]


def resample_audio(x: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample `x` (time on the last axis) from `orig_sr` to `target_sr`; float32 out.

    Polyphase filtering with the reduced up/down factors (e.g. 44100 -> 16000 is 160/441):
    exact rational conversion with scipy's Kaiser-windowed anti-aliasing filter, and no FFT
    edge artefacts. Equal rates return the input unchanged (as float32).
    """
    orig_sr, target_sr = int(orig_sr), int(target_sr)
    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} -> {target_sr}")
    x = np.asarray(x)
    if orig_sr == target_sr:
        return x.astype(np.float32, copy=False)
    g = gcd(orig_sr, target_sr)
    y = resample_poly(x, target_sr // g, orig_sr // g, axis=-1)
    return y.astype(np.float32, copy=False)


# The model-input upsampler's filter. Passband flat (within 1e-4 dB) up to SINC_PASSBAND x the
# low-res Nyquist (0.8: the 2017 protocol's Chebyshev cutoff), stopband from the low-res Nyquist on
# (>= 99 dB down: the Kaiser design A = 14.36 * W * (1 - passband) + 7.95 dB for half-width W), so
# the images of everything the low-res signal holds, up to its Nyquist, are removed.
SINC_HALF_WIDTH = 32  # low-res samples each side one output sample combines (the reach)
SINC_PASSBAND = 0.8  # passband edge, fraction of the low-res Nyquist; the stopband starts at 1.0
SINC_BETA = 10.0  # Kaiser window shape (~100 dB stopband for this width and transition)


def check_ratio(ratio: int) -> int:
    """`ratio` as an int >= 1; TypeError / ValueError otherwise."""
    if isinstance(ratio, bool):
        raise TypeError(f"ratio must be an integer >= 1, got {ratio!r}")
    try:
        r = operator.index(ratio)
    except TypeError:
        raise TypeError(f"ratio must be an integer >= 1, got {ratio!r}") from None
    if r < 1:
        raise ValueError(f"ratio must be an integer >= 1, got {r}")
    return r


@lru_cache(maxsize=16)
def sinc_kernel(ratio: int) -> np.ndarray:
    """The float64 interpolation filter `h` at the high rate, `2 * SINC_HALF_WIDTH * ratio + 1`
    taps centred on tap `SINC_HALF_WIDTH * ratio`: `upsampled[t] = sum_k x[k] h[t - k * ratio]`.

    A Kaiser-windowed sinc with its -6 dB point halfway between the passband edge and the low-res
    Nyquist; each of its `ratio` polyphase components sums to exactly 1, so a constant is
    reproduced exactly at every output phase.
    """
    r = check_ratio(ratio)
    n = np.arange(-SINC_HALF_WIDTH * r, SINC_HALF_WIDTH * r + 1)
    cutoff = (1.0 + SINC_PASSBAND) / 2 / r  # fraction of the high-res Nyquist
    h = cutoff * np.sinc(cutoff * n) * np.kaiser(n.size, SINC_BETA)
    phase = (n % r).astype(np.int64)
    sums = np.bincount(phase, weights=h, minlength=r)
    h = h / sums[phase]
    h.setflags(write=False)  # cached: shared by every caller
    return h
