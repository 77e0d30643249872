"""Block-wise resampling and degradation, so that `upsample.py` streams every input path.

A 30-minute recording must not be decoded, resampled or low-passed as one array: that costs
memory proportional to its length. The readers here produce the same signal as the whole-file
functions, a block at a time, by calling those very functions on overlapping blocks of input:

- `ResampledReader`: `audio_superres.dsp.resample.resample_audio` (a polyphase FIR). Blocks start
  at multiples of the reduced `down` factor, so every block's output grid is a slice of the
  whole file's, and each block carries more context than the FIR's half length on both sides:
  the result equals whole-file resampling to float rounding.
- `LowresReader`: `audio_superres.dsp.lowpass.make_lowres` (zero-phase IIR `sosfiltfilt`, then
  `[::r]`). Blocks start at multiples of `ratio`; the context on each side is the length over
  which the filter's impulse response decays by `CONTEXT_TOL` (from its largest pole radius), so
  the transients of a block's own edges have died out where its output is kept. The file's own
  edges are a block's edges, handled exactly as in whole-file processing. Streamed vs whole-file
  degradation: > 120 dB SNR (`tests/test_blockwise.py` asks for > 60 dB).

All readers share one protocol with `soundfile.SoundFile` (what `inference.super_resolve_stream`
reads): `frames`, `channels`, `read(n, dtype=, always_2d=) -> (n, channels)`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from math import gcd
from typing import Any, Protocol

import numpy as np
import torch
from scipy import signal

from audio_superres.data.audio_io import AudioReader
from audio_superres.dsp.bandwidth import refilter, refilter_sos
from audio_superres.dsp.degrade import resampler_context
from audio_superres.dsp.lowpass import (
    LowpassSpec,
    as_lowpass_spec,
    lowpass_sos,
    make_lowres,
    sosfiltfilt_padlen,
)
from audio_superres.dsp.resample import resample_audio

__all__ = [
    "BLOCK",
    "CONTEXT_TOL",
    "FileReader",
    "LowresReader",
    "Reader",
    "RefilteredReader",
    "ResampledReader",
    "lowpass_context",
    "resample_context",
    "sos_context",
]

BLOCK = 1 << 16  # output frames per resampled block; HR frames per degraded block (4 s at 16 kHz)
CONTEXT_TOL = 1e-12  # IIR impulse-response decay over a block's context


class Reader(Protocol):
    """What `super_resolve_stream` reads: a `soundfile.SoundFile`, or one of the readers here."""

    frames: int
    channels: int

    def read(self, frames: int, dtype: str = ..., always_2d: bool = ...) -> np.ndarray: ...


FileReader = AudioReader
"""A file read block by block: `data.audio_io.AudioReader`, the one reader that checks files
(truncation, zero frames, non-finite samples, decoding), shared with `read_audio`."""


class _BlockReader(ABC):
    """Output frames made block by block from a sequentially read source.

    Subclasses say which source frames block k needs (`_span`) and turn them into its output
    frames (`_block`). Only the source frames of the block in flight (with context) and the
    not-yet-read output of one block are held.
    """

    frames: int
    block: int

    def __init__(self, source: Reader) -> None:
        self.source = source
        self.channels = int(source.channels)
        self._src = np.zeros((self.channels, 0), dtype=np.float32)
        self._src_start = 0  # source frame index of self._src[:, 0]
        self._src_end = int(source.frames)
        self._out = np.zeros((self.channels, 0), dtype=np.float32)
        self._next = 0  # next block to make

    def _source(self, a: int, b: int) -> np.ndarray:
        """Source frames [a, b) as `(C, b - a)`; frames before `a` are dropped for good."""
        if a < self._src_start:
            raise RuntimeError(f"source frame {a} was already dropped (blocks must move forward)")
        self._src = self._src[:, a - self._src_start :]
        self._src_start = a
        while self._src_start + self._src.shape[1] < b:
            n = b - self._src_start - self._src.shape[1]
            got = np.ascontiguousarray(self.source.read(n, dtype="float32", always_2d=True).T)
            if got.shape[1] == 0:
                raise ValueError(
                    f"the input ended after {self._src_start + self._src.shape[1]} of "
                    f"{self._src_end} frames"
                )
            self._src = np.concatenate([self._src, got], axis=1)
        return self._src[:, : b - a]

    @abstractmethod
    def _block(self, k: int) -> np.ndarray:
        """Output frames `(C, n)` of block k (every block but the last is `self.block` long)."""

    def read(self, frames: int, dtype: str = "float32", always_2d: bool = True) -> np.ndarray:
        """The next `frames` output frames `(n, C)` (fewer at the end), like `SoundFile.read`."""
        n_blocks = -(-self.frames // self.block)
        while self._out.shape[1] < frames and self._next < n_blocks:
            self._out = np.concatenate([self._out, self._block(self._next)], axis=1)
            self._next += 1
        out, self._out = self._out[:, :frames], self._out[:, frames:].copy()
        out = out.T.astype(dtype, copy=False)
        return out if always_2d or self.channels > 1 else out[:, 0]


def resample_context(orig_sr: int, target_sr: int) -> int:
    """Source frames of context per block side: > the polyphase FIR's half length, a multiple
    of the reduced `down` factor (scipy's filter has 10 * max(up, down) taps per side at the
    upsampled rate; twice that is kept)."""
    g = gcd(int(orig_sr), int(target_sr))
    up, down = int(target_sr) // g, int(orig_sr) // g
    half = math.ceil(2 * 10 * max(up, down) / up) + 1
    return -(-half // down) * down


class ResampledReader(_BlockReader):
    """`resample_audio(source, orig_sr, target_sr)`, block by block (equal to float rounding)."""

    def __init__(self, source: Reader, orig_sr: int, target_sr: int, block: int = BLOCK) -> None:
        super().__init__(source)
        if orig_sr <= 0 or target_sr <= 0:
            raise ValueError(f"sample rates must be positive, got {orig_sr} -> {target_sr}")
        g = gcd(int(orig_sr), int(target_sr))
        self.orig_sr, self.target_sr = int(orig_sr), int(target_sr)
        self.samplerate = self.target_sr  # as soundfile.SoundFile and FileReader name it
        self.up, self.down = self.target_sr // g, self.orig_sr // g
        n_in = self._src_end
        self.frames = -(-n_in * self.up // self.down)  # resample_poly: ceil(n * up / down)
        units = max(1, block // self.up)  # a block is `units` periods of the polyphase grid
        self.block_in, self.block = units * self.down, units * self.up
        self.context = resample_context(orig_sr, target_sr)

    def _block(self, k: int) -> np.ndarray:
        start = k * self.block_in
        a = max(0, start - self.context)
        b = min(self._src_end, start + self.block_in + self.context)
        y = resample_audio(self._source(a, b), self.orig_sr, self.target_sr)
        off = (start - a) * self.up // self.down
        n = min(self.block, self.frames - k * self.block)
        return y[:, off : off + n]


def lowpass_context(spec: LowpassSpec, ratio: int, tol: float = CONTEXT_TOL) -> int:
    """HR frames of context per block side for `make_lowres`: where the filter's impulse
    response has decayed by `tol` (from its largest pole radius), at least its padlen, a
    multiple of `ratio`. 0 without a filter (`kind: none` only decimates); a resampler's kernel
    half-length for `kind: resample`."""
    if spec.kind == "resample":
        n = resampler_context(ratio, spec.resampler, spec.cutoff, spec.filter_width)
        return -(-n // ratio) * ratio
    sos = lowpass_sos(spec, ratio)
    if sos is None or ratio == 1:
        return 0
    return sos_context(sos, ratio, tol)


def sos_context(sos: np.ndarray, multiple: int = 1, tol: float = CONTEXT_TOL) -> int:
    """Frames of context per block side for a zero-phase IIR `sos`: where its impulse response
    has decayed by `tol` (from its largest pole radius), at least its padlen, rounded up to a
    multiple of `multiple`."""
    _, poles, _ = signal.sos2zpk(sos)
    radius = float(np.max(np.abs(poles)))
    n = math.ceil(math.log(tol) / math.log(radius)) if 0 < radius < 1 else 0
    n = max(n, sosfiltfilt_padlen(sos) + 1)
    return -(-n // multiple) * multiple


class LowresReader(_BlockReader):
    """`make_lowres(source, ratio, lowpass)` of an HR source, block by block.

    `frames` is the whole file's LR length (the HR length cropped to a multiple of `ratio`,
    divided by it). A file too short for the filter raises make_lowres's own error. A spec with a
    codec (`codec: mp3`, which needs `sample_rate`) is coded as one block: a codec's frames do not
    restart at block edges.
    """

    def __init__(
        self,
        source: Reader,
        ratio: int,
        lowpass: str | LowpassSpec | Mapping[str, Any] = "chebyshev",
        block: int | None = None,
        sample_rate: int | None = None,
    ) -> None:
        super().__init__(source)
        self.ratio = int(ratio)
        self.spec = as_lowpass_spec(lowpass)
        # the codec needs the high-res rate: given, or the source's (FileReader, ResampledReader)
        self.sample_rate = sample_rate if sample_rate is not None else getattr(
            source, "samplerate", None
        )
        self.hr_frames = self._src_end - self._src_end % self.ratio
        self.frames = self.hr_frames // self.ratio
        self.block = max(1, BLOCK // self.ratio if block is None else block)  # LR frames
        if self.spec.codec != "none":
            self.block = max(1, self.frames)
        self.context = lowpass_context(self.spec, self.ratio)

    def _block(self, k: int) -> np.ndarray:
        r = self.ratio
        start = k * self.block * r
        a = max(0, start - self.context)
        b = min(self.hr_frames, start + self.block * r + self.context)
        lr = make_lowres(
            torch.from_numpy(self._source(a, b).copy()), r, self.spec, sample_rate=self.sample_rate
        ).numpy()
        off = (start - a) // r
        n = min(self.block, self.frames - k * self.block)
        return lr[:, off : off + n]


class RefilteredReader(_BlockReader):
    """`bandwidth.refilter(source, lowpass)` of a low-res source, block by block: the training
    filter's shape at the source's own rate (input brought to the training condition).

    Blocks carry `sos_context` frames on each side (the filter's decay to `CONTEXT_TOL`), so the
    result equals whole-signal `refilter` to float32 rounding, file edges included.
    """

    def __init__(
        self,
        source: Reader,
        lowpass: str | LowpassSpec | Mapping[str, Any],
        block: int = BLOCK,
    ) -> None:
        super().__init__(source)
        self.spec = as_lowpass_spec(lowpass)
        design = refilter_sos(self.spec)
        if design is None:
            raise ValueError(f"lowpass {self.spec.kind!r} has no filter to re-apply")
        self.frames = self._src_end
        self.block = max(1, int(block))
        self.context = sos_context(design[0])

    def _block(self, k: int) -> np.ndarray:
        start = k * self.block
        a = max(0, start - self.context)
        b = min(self.frames, start + self.block + self.context)
        x = torch.from_numpy(self._source(a, b).astype(np.float64))
        y = refilter(x, self.spec).to(torch.float32).numpy()
        n = min(self.block, self.frames - start)
        return y[:, start - a : start - a + n]
