"""What a low-res input holds, and whether it must be brought to the model's training condition.

Two measurements of one Welch power spectrum (Hann window, `n_fft` samples, half overlap, mean
removed per segment, channels summed), accumulated block by block so a long file is measured at
bounded memory (`SpectrumAccumulator`):

- `effective_bandwidth(x, sample_rate, energy=0.99)`: the frequency below which `energy` of the
  signal's energy lies (AudioSR uses 98.5%, FLowHigh 99%). Interpolated within a bin, so on
  band-limited noise it lands within a fraction of a bin of `energy` x the band edge. A silent
  signal has bandwidth 0.0 Hz (never NaN).
- `check_input(x_or_spectrum, lowpass, ratio, ...)`: the re-filter decision. A model trained on
  one low-pass filter learns to undo that filter's roll-off near the low-res Nyquist; input that
  is not rolled off there (no filter / aliased, Bessel, a resampler's sinc) is amplified by
  20-40 dB (issue 20). The decision compares the input's top band with what the training filter
  leaves there:

  * expected: the training filter's own power response (`lowpass_sos`, forward-backward squared
    when zero phase), folded onto the low-res band as decimation folds it, for a white source:
    `E(u)`, u = frequency / low-res Nyquist. For `lowpass=random` it is the loosest filter of the
    distribution at every frequency (the pointwise maximum over the extreme draws).
  * reference band: the top of the training passband (within 1 dB of its peak; for `random` the
    passband of its tightest draw, so that every draw passes it), as wide as the band above it
    (at most the passband's upper half): 0.64-0.82 of the low-res Nyquist for the default
    Chebyshev at r = 4. Next to the top band, so a recording's own spectral tilt matters little.
  * top band: where `E` is at least `TOP_BAND_DB` (10 dB) below the reference: the band the
    training filter suppresses (0.86-1.0 of the low-res Nyquist for the default Chebyshev at
    r = 4). Empty when the training input was not suppressed anywhere (no filter, or `random`
    draws reaching cutoff 1.0): then there is nothing to do.
  * excess: `10 log10(mean over the top band of (P(u) / P_ref) / max(E(u) / E_ref, FLOOR))`, the
    mean measured-to-expected power ratio, both relative to their own reference band; `E` is
    floored at `FLOOR_DB` (-60 dB) so a filter's deep stopband does not turn a recording's noise
    floor into "excess".
  * decision: re-filter when the excess exceeds `MARGIN_DB` (10 dB). Matched input measures
    about 0 dB on white noise and at most +2.5 dB on the VCTK clips and speech-like signals
    (r = 2, 3, 4, 8); no filter, Bessel and resampler-made input (scipy's polyphase, soxr,
    torchaudio) measure 14-50 dB there (docs/inference.md gives the measured table). Below the
    margin the input passes bit for bit unchanged.

Re-filtering (`refilter`) applies the training filter's shape at the LOW-RES rate, through the one
filter code of `dsp/lowpass.py` (`lowpass_sos(spec, 1)`: the same family, order and cutoff as a
fraction of the low-res Nyquist; `sosfiltfilt` when the training filter was zero phase).

`input_conditioning` (auto | off | always) names the policy; `conditioning_check` is the one
decision under it (SuperResolver's streamed path, which measures a reader with `measure_reader`
and re-filters with `dsp.blockwise.RefilteredReader`, and `condition_lowres`, which conditions a
whole in-memory low-res tensor for evaluate.py: `measure_signal` gives it the spectrum
`measure_reader` gives for the same float32 samples, bit for bit, and `refilter` is the filter
`RefilteredReader` applies block by block).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import product
from typing import Any

import numpy as np
import torch
from scipy import signal

from audio_superres.dsp.lowpass import (
    LowpassSpec,
    as_lowpass_spec,
    lowpass_sos,
    sosfilt_torch,
    sosfiltfilt_padlen,
    sosfiltfilt_torch,
)
from audio_superres.errors import ConfigError

__all__ = [
    "CONDITIONING_MODES",
    "ENERGY",
    "FLOOR_DB",
    "MARGIN_DB",
    "N_FFT",
    "NARROW_FRACTION",
    "TOP_BAND_DB",
    "InputCheck",
    "PowerSpectrum",
    "SpectrumAccumulator",
    "bandwidth_from_spectrum",
    "check_input",
    "condition_lowres",
    "conditioning_check",
    "conditioning_mode",
    "effective_bandwidth",
    "expected_response",
    "measure_reader",
    "measure_signal",
    "power_spectrum",
    "refilter",
    "refilter_sos",
    "refilter_spec",
]

N_FFT = 2048  # Welch segment: 2 Hz bins at 4 kHz, 23 Hz at 48 kHz
ENERGY = 0.99  # effective bandwidth: the frequency below which 99% of the energy lies (FLowHigh)
TOP_BAND_DB = 10.0  # the top band: where the training filter leaves at least 10 dB less
FLOOR_DB = -60.0  # expected levels below this (relative to the reference band) count as this
MARGIN_DB = 10.0  # re-filter when the top band is louder than the training input by more
NARROW_FRACTION = 0.5  # warn when the bandwidth is below half of what the training input had
_SILENT_POWER = 1e-20  # mean power per sample (-200 dB re full scale): nothing to measure
MEASURE_BLOCK = 1 << 16  # frames per block read by measure_reader (and fed by measure_signal)
# input_conditioning=: auto (re-filter only when the top band says so), off, always (issue 20)
CONDITIONING_MODES = ("auto", "off", "always")


@dataclass(frozen=True)
class PowerSpectrum:
    """Welch power spectrum: mean power per bin over segments, channels summed."""

    power: np.ndarray  # (n_fft // 2 + 1,), float64
    sample_rate: float
    n_fft: int
    frames: int  # samples measured (per channel)

    @property
    def freqs(self) -> np.ndarray:
        return np.fft.rfftfreq(self.n_fft, 1.0 / self.sample_rate)

    @property
    def silent(self) -> bool:
        return self.frames == 0 or float(self.power.sum()) <= _SILENT_POWER * self.n_fft


class SpectrumAccumulator:
    """Welch's method fed block by block: `update((n, C) or (n,) block)`, then `result()`.

    Segments of `n_fft` samples hop by `n_fft // 2` across block boundaries, so the result does
    not depend on how the signal was cut. A signal shorter than one segment gets one periodogram
    of its own length (Hann window of that length, zero padded to `n_fft`).
    """

    def __init__(self, sample_rate: float, n_fft: int = N_FFT) -> None:
        if n_fft < 8 or n_fft % 2:
            raise ValueError(f"n_fft must be an even number >= 8, got {n_fft}")
        self.sample_rate, self.n_fft, self.hop = float(sample_rate), int(n_fft), int(n_fft) // 2
        self._window = signal.get_window("hann", self.n_fft)
        self._buf: np.ndarray | None = None  # (C, pending samples)
        self._sum = np.zeros(self.n_fft // 2 + 1)
        self._segments = 0
        self.frames = 0

    def update(self, block: np.ndarray) -> None:
        x = np.asarray(block, dtype=np.float64)
        x = x[:, None] if x.ndim == 1 else x
        if x.ndim != 2:
            raise ValueError(f"expected a block (n,) or (n, channels), got shape {x.shape}")
        x = x.T  # (C, n)
        self.frames += x.shape[1]
        self._buf = x if self._buf is None else np.concatenate([self._buf, x], axis=1)
        n_seg = (self._buf.shape[1] - self.n_fft) // self.hop + 1
        if n_seg <= 0:
            return
        idx = np.arange(self.n_fft)[None, :] + self.hop * np.arange(n_seg)[:, None]
        seg = self._buf[:, idx]  # (C, n_seg, n_fft)
        self._sum += self._periodograms(seg, self._window).sum(axis=(0, 1))
        self._segments += n_seg
        self._buf = self._buf[:, n_seg * self.hop :]

    def _periodograms(self, seg: np.ndarray, window: np.ndarray) -> np.ndarray:
        seg = seg - seg.mean(axis=-1, keepdims=True)
        spec = np.abs(np.fft.rfft(seg * window, n=self.n_fft)) ** 2
        return spec / float(np.sum(window**2))  # power per sample, as scipy's "density" / fs

    def result(self) -> PowerSpectrum:
        if self._segments:
            power = self._sum / self._segments
        elif self._buf is not None and self._buf.shape[1] >= 2:  # shorter than one segment
            n = self._buf.shape[1]
            power = self._periodograms(self._buf[:, None, :], signal.get_window("hann", n))
            power = power.sum(axis=(0, 1))
        else:
            power = np.zeros(self.n_fft // 2 + 1)
        return PowerSpectrum(power, self.sample_rate, self.n_fft, self.frames)


def _as_array(x: Any) -> np.ndarray:
    """A signal `(n,)` or `(channels, n)` (package convention) as `(n, channels)` float64."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        return x[:, None]
    if x.ndim == 2:
        return x.T
    raise ValueError(f"expected a signal (n,) or (channels, n), got shape {x.shape}")


def power_spectrum(x: Any, sample_rate: float, n_fft: int = N_FFT) -> PowerSpectrum:
    """Welch power spectrum of a whole signal `(n,)` or `(channels, n)` (numpy or torch)."""
    acc = SpectrumAccumulator(sample_rate, n_fft)
    acc.update(_as_array(x))
    return acc.result()


def measure_reader(
    reader: Any, sample_rate: float, n_fft: int = N_FFT, block: int = MEASURE_BLOCK
) -> PowerSpectrum:
    """Welch power spectrum of everything a reader (`read(n, dtype=, always_2d=)`, e.g. a
    `soundfile.SoundFile` or a `dsp.blockwise` reader) still holds, read block by block: one
    pass over the file at memory bounded by `block` frames."""
    acc = SpectrumAccumulator(sample_rate, n_fft)
    while True:
        x = reader.read(block, dtype="float32", always_2d=True)
        if len(x) == 0:
            break
        acc.update(x)
    return acc.result()


def measure_signal(
    x: Any, sample_rate: float, n_fft: int = N_FFT, block: int = MEASURE_BLOCK
) -> PowerSpectrum:
    """`measure_reader` of an in-memory signal `(n,)` or `(channels, n)` (numpy or torch): its
    float32 samples fed to the accumulator in the reader's blocks, so the spectrum equals
    `measure_reader` over a reader of the same float32 samples (a file, `SuperResolver.sr`'s
    array) bit for bit, and the decision on it is the same."""
    frames = _as_array(x).astype(np.float32)  # (n, channels), as a reader's read() gives it
    acc = SpectrumAccumulator(sample_rate, n_fft)
    for start in range(0, len(frames), int(block)):
        acc.update(frames[start : start + int(block)])
    return acc.result()


def bandwidth_from_spectrum(spec: PowerSpectrum, energy: float = ENERGY) -> float:
    """The frequency (Hz) below which `energy` of the spectrum's power lies; 0.0 when silent.

    Bin k holds the power of [f_k - df/2, f_k + df/2] (clipped to [0, Nyquist]), spread evenly:
    the crossing is interpolated within the bin where the cumulative power passes `energy`.
    """
    if not 0 < energy <= 1:
        raise ValueError(f"energy must be a fraction in (0, 1], got {energy}")
    if spec.silent:
        return 0.0
    p = spec.power
    df = spec.sample_rate / spec.n_fft
    edges = np.clip((np.arange(len(p) + 1) - 0.5) * df, 0.0, spec.sample_rate / 2)
    cum = np.concatenate([[0.0], np.cumsum(p)])
    target = energy * cum[-1]
    k = int(np.searchsorted(cum, target, side="left"))  # cum[k - 1] < target <= cum[k]
    k = min(max(k, 1), len(p))
    frac = (target - cum[k - 1]) / p[k - 1] if p[k - 1] > 0 else 1.0
    return float(edges[k - 1] + frac * (edges[k] - edges[k - 1]))


def effective_bandwidth(
    x: Any, sample_rate: float, energy: float = ENERGY, n_fft: int = N_FFT
) -> float:
    """The frequency (Hz) below which `energy` (99%) of `x`'s energy lies; 0.0 for silence.

    `x` is `(n,)` or `(channels, n)` (numpy or torch); the channels' powers are summed.
    """
    return bandwidth_from_spectrum(power_spectrum(x, sample_rate, n_fft), energy)


# ---- what the training filter leaves ---------------------------------------------------------


def _extreme_draws(spec: LowpassSpec, cutoff: float) -> list[LowpassSpec]:
    """Corners of a `random` spec at one cutoff: every family, the ends of the order, ripple and
    attenuation ranges (the response above the cutoff is monotone in each)."""
    return [
        LowpassSpec(
            kind=family,
            order=order,
            ripple_db=ripple,
            cutoff=cutoff,
            zero_phase=spec.zero_phase,
            attenuation_db=attenuation,
        )
        for family, order, ripple, attenuation in product(
            spec.families, spec.order_range, spec.ripple_range, spec.attenuation_range
        )
    ]


def expected_response(
    lowpass: Any, ratio: int, u: np.ndarray, tightest: bool = False
) -> np.ndarray:
    """Power the training input holds at low-res frequencies `u` (fractions of the low-res
    Nyquist) for a white high-res source: the filter's power response (squared again when zero
    phase) summed over the high-res frequencies that decimation folds onto `u`. Linear, with
    `ratio` as the level of an unfiltered input. `random`: the loosest draw at every frequency
    (its highest cutoff), or with `tightest` the tightest (its lowest cutoff)."""
    spec = as_lowpass_spec(lowpass)
    if spec.kind == "random":
        cutoff = spec.cutoff_range[0] if tightest else spec.cutoff_range[1]
        responses = [expected_response(s, ratio, u) for s in _extreme_draws(spec, cutoff)]
        return np.min(responses, axis=0) if tightest else np.max(responses, axis=0)
    u = np.asarray(u, dtype=np.float64)
    # two-sided high-res frequencies (fractions of the high-res Nyquist) that alias onto u
    v = (u[None, :] + 2 * np.arange(-ratio, ratio + 1)[:, None]) / ratio
    inside = (v > -1) & (v <= 1)
    w = np.abs(v)
    sos = lowpass_sos(spec, ratio)
    if sos is None:
        gain = np.ones_like(w)
    else:
        _, h = signal.sosfreqz(sos, worN=np.pi * np.clip(w, 0, 1).ravel())
        gain = np.abs(h).reshape(w.shape) ** 2
        if spec.zero_phase:
            gain = gain**2
    return np.where(inside, gain, 0.0).sum(axis=0)


@dataclass(frozen=True)
class InputCheck:
    """The measurements behind the re-filter decision for one low-res input, and the decision.

    Levels are dB relative to the reference band; frequencies are fractions of the low-res
    Nyquist (`*_hz` in Hz). `measured_db` / `expected_db`: mean top-band power of the input and
    of the training input; `excess_db`: mean measured-to-expected ratio over the top band (NaN
    when there is nothing to compare); `refilter`: whether the input is brought to the training
    condition; `reason`: one phrase saying why.
    """

    bandwidth_hz: float
    nyquist_hz: float
    expected_bandwidth: float  # the training input's effective bandwidth, fraction of Nyquist
    top_band: tuple[float, float] | None
    reference_band: tuple[float, float] | None
    measured_db: float
    expected_db: float
    excess_db: float
    margin_db: float
    refilter: bool
    reason: str

    @property
    def bandwidth(self) -> float:
        """Effective bandwidth as a fraction of the low-res Nyquist."""
        return self.bandwidth_hz / self.nyquist_hz if self.nyquist_hz else 0.0

    @property
    def narrow(self) -> bool:
        """Much less bandwidth than the training input had (below `NARROW_FRACTION` of it)."""
        return self.bandwidth < NARROW_FRACTION * self.expected_bandwidth

    def summary(self) -> str:
        """One phrase for the log, the page and the CSV."""
        bw = f"bandwidth {self.bandwidth_hz:.0f} Hz ({self.bandwidth:.2f} of Nyquist)"
        if np.isfinite(self.excess_db):
            bw += f", top band {self.excess_db:+.1f} dB vs training input"
        return f"{bw}; {'re-filtered' if self.refilter else 'unchanged'}: {self.reason}"

    def as_row(self) -> dict[str, Any]:
        """Flat values for the per-file CSV."""
        return {
            "bandwidth_hz": round(self.bandwidth_hz, 1),
            "bandwidth_fraction": round(self.bandwidth, 4),
            "top_band_excess_db": round(self.excess_db, 2) if np.isfinite(self.excess_db) else "",
            "refiltered": self.refilter,
            "reason": self.reason,
        }


def _levels_db(num: float, den: float) -> float:
    return float(10 * np.log10(num / den)) if num > 0 and den > 0 else float("-inf")


def check_input(
    x: Any,
    lowpass: Any,
    ratio: int,
    sample_rate: float | None = None,
    margin_db: float = MARGIN_DB,
    energy: float = ENERGY,
    always: bool = False,
) -> InputCheck:
    """Measure a low-res input against the training filter `lowpass` (at `ratio`) and decide.

    `x` is a `PowerSpectrum` or a low-res signal `(n,)` / `(channels, n)` at `sample_rate` (the
    model's low-res rate). Re-filter when the top band exceeds the training input's by more
    than `margin_db`; see the module docstring for the bands and the rule. `always`: re-filter
    whenever the training filter has a shape to apply and the input is long enough for it.
    """
    if isinstance(x, PowerSpectrum):
        spec_x = x
    else:
        if sample_rate is None:
            raise ValueError("check_input needs sample_rate for a signal (or give a spectrum)")
        spec_x = power_spectrum(x, sample_rate)
    check = _measure(spec_x, lowpass, ratio, margin_db, energy)
    design = refilter_sos(lowpass)
    if always and design is not None and spec_x.frames > sosfiltfilt_padlen(design[0]):
        return replace(check, refilter=True, reason="input_conditioning=always")
    return check


def conditioning_mode(mode: object) -> str:
    """`input_conditioning` as given (any case) -> auto | off | always; a ConfigError naming the
    setting for anything else (upsample.py, evaluate.py, `SuperResolver` and this module)."""
    name = str(mode).lower()
    if name not in CONDITIONING_MODES:
        raise ConfigError(
            f"input_conditioning must be one of {', '.join(CONDITIONING_MODES)}; got {mode!r}"
        )
    return name


def conditioning_check(
    spectrum: PowerSpectrum, lowpass: Any, ratio: int, mode: str, matched: bool = False
) -> InputCheck | None:
    """The `input_conditioning` decision for one low-res input whose spectrum is `spectrum`,
    for a model trained on `lowpass` at `ratio`: None under `off` (nothing measured), else
    `check_input` (`always`: re-filter whenever there is a filter to apply). `matched`: the
    input was made with the training filter itself (upsample.py `input_kind=hr` without
    `lowpass=`), never re-filtered under `auto`. Shared by `SuperResolver.condition` (streamed
    files and arrays) and `condition_lowres` (evaluate.py's in-memory inputs)."""
    mode = conditioning_mode(mode)
    if mode == "off":
        return None
    always = mode == "always"
    check = check_input(spectrum, lowpass, ratio, always=always)
    if not always and matched:
        check = replace(check, refilter=False, reason="degraded with the training filter")
    return check


def _measure(
    spec_x: PowerSpectrum, lowpass: Any, ratio: int, margin_db: float, energy: float
) -> InputCheck:
    """`check_input`'s measurements and measured decision."""
    nyquist = spec_x.sample_rate / 2
    u = spec_x.freqs / nyquist
    expected = expected_response(lowpass, ratio, u)
    expected_bw = (
        bandwidth_from_spectrum(
            PowerSpectrum(expected, spec_x.sample_rate, spec_x.n_fft, 1), energy
        )
        / nyquist
    )
    bandwidth = bandwidth_from_spectrum(spec_x, energy)
    common = {
        "bandwidth_hz": bandwidth,
        "nyquist_hz": nyquist,
        "expected_bandwidth": expected_bw,
        "margin_db": float(margin_db),
    }
    exp_db = 10 * np.log10(np.maximum(expected, 1e-300) / expected.max())
    # the reference band lies in every training filter's passband (`random`: its tightest draw)
    tight = expected_response(lowpass, ratio, u, tightest=True)
    passband = np.flatnonzero(tight >= tight.max() * 10 ** (-1.0 / 10))
    edge = u[passband[-1]]
    edge = float(edge)
    low = max(2 * edge - 1, edge / 2)  # as wide as the band above the passband, at most half
    ref = (u >= low) & (u <= edge)
    top = (u > edge) & (exp_db <= -TOP_BAND_DB)
    if not top.any():
        return InputCheck(
            **common,
            top_band=None,
            reference_band=None,
            measured_db=float("nan"),
            expected_db=float("nan"),
            excess_db=float("nan"),
            refilter=False,
            reason=f"the training filter leaves the whole band within {TOP_BAND_DB:g} dB "
            "(nothing to bring back)",
        )
    bands = {"top_band": (float(u[top][0]), float(u[top][-1])), "reference_band": (low, edge)}
    e_ref = expected[ref].mean()
    expected_db = _levels_db(expected[top].mean(), e_ref)
    p_ref = spec_x.power[ref].mean()
    if spec_x.silent or p_ref <= 0:
        return InputCheck(
            **common,
            **bands,
            measured_db=float("nan"),
            expected_db=expected_db,
            excess_db=float("nan"),
            refilter=False,
            reason="silent (nothing to measure)"
            if spec_x.silent
            else "no content below the training cutoff to compare with",
        )
    design = refilter_sos(lowpass)
    if design is not None and spec_x.frames <= sosfiltfilt_padlen(design[0]):
        return InputCheck(
            **common,
            **bands,
            measured_db=float("nan"),
            expected_db=expected_db,
            excess_db=float("nan"),
            refilter=False,
            reason=f"too short to measure or re-filter ({spec_x.frames} samples)",
        )
    floor = 10 ** (FLOOR_DB / 10)
    ratio_top = (spec_x.power[top] / p_ref) / np.maximum(expected[top] / e_ref, floor)
    excess = float(10 * np.log10(ratio_top.mean()))
    needed = excess > margin_db
    reason = (
        f"top band {excess:.1f} dB above the training input's (margin {margin_db:g} dB)"
        if needed
        else f"top band within {margin_db:g} dB of the training input's"
    )
    return InputCheck(
        **common,
        **bands,
        measured_db=_levels_db(spec_x.power[top].mean(), p_ref),
        expected_db=expected_db,
        excess_db=excess,
        refilter=needed,
        reason=reason,
    )


# ---- bringing an input to the training condition -----------------------------------------------


def refilter_spec(lowpass: Any) -> LowpassSpec | None:
    """The one filter that brings low-res input to the training condition, or None when the
    training input was unfiltered. `random`: a draw of the distribution at its loosest cutoff
    with its sharpest order (Chebyshev I when drawn, else the first family), so the input stays
    inside the training distribution and loses as little of its passband as possible."""
    spec = as_lowpass_spec(lowpass)
    if spec.kind == "none":
        return None
    if spec.kind == "random":
        if spec.cutoff_range[1] >= 1.0:
            return None
        family = "chebyshev" if "chebyshev" in spec.families else spec.families[0]
        return LowpassSpec(
            kind=family,
            order=spec.order_range[1],
            ripple_db=spec.ripple_range[0],
            cutoff=spec.cutoff_range[1],
            zero_phase=spec.zero_phase,
            attenuation_db=spec.attenuation_range[1],
        )
    return None if spec.cutoff >= 1.0 else spec


def refilter_sos(lowpass: Any) -> tuple[np.ndarray, bool] | None:
    """(sos at the low-res rate, zero phase) of `refilter_spec`, or None."""
    spec = refilter_spec(lowpass)
    if spec is None:
        return None
    sos = lowpass_sos(spec, 1)  # cutoff as a fraction of the signal's own Nyquist
    assert sos is not None
    return sos, spec.zero_phase


def condition_lowres(
    lr: torch.Tensor,
    lowpass: Any,
    ratio: int,
    sample_rate: float,
    mode: str,
    matched: bool = False,
) -> tuple[torch.Tensor, list[InputCheck | None]]:
    """Whole in-memory low-res inputs `(B, m)` (or one `(m,)`) at `sample_rate` (the model's
    low-res rate) brought to the training condition of a model trained on `lowpass` at `ratio`,
    as `SuperResolver` conditions a file: each row measured (`measure_signal`), decided by
    `conditioning_check` and, only where it says so, re-filtered (`refilter`, in float64 as
    `RefilteredReader` does, back to `lr`'s dtype and device). Returns the conditioned tensor
    (`lr` itself, untouched, when no row is re-filtered) and each row's check (None under
    `off`). Rows are whole signals: a batch padded to a common length measures its padding."""
    rows = lr.reshape(1, -1) if lr.dim() == 1 else lr
    if rows.dim() != 2:
        raise ValueError(f"expected low-res input (m,) or (B, m), got shape {tuple(lr.shape)}")
    checks = [
        conditioning_check(measure_signal(row, sample_rate), lowpass, ratio, mode, matched)
        for row in rows
    ]
    if not any(c is not None and c.refilter for c in checks):
        return lr, checks
    out = rows.clone()
    for i, check in enumerate(checks):
        if check is not None and check.refilter:
            x = rows[i].detach().to("cpu", torch.float64)
            out[i] = refilter(x, lowpass).to(rows.dtype).to(rows.device)
    return out.reshape(lr.shape), checks


def refilter(x: torch.Tensor, lowpass: Any) -> torch.Tensor:
    """Low-res `x` `(..., m)` filtered with the training filter's shape at the low-res rate
    (forward-backward when the training filter was zero phase); `x` itself when there is no
    filter to apply."""
    design = refilter_sos(lowpass)
    if design is None:
        return x
    sos, zero_phase = design
    return sosfiltfilt_torch(x, sos) if zero_phase else sosfilt_torch(x, sos)
