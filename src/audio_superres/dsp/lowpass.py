"""How the low-res input is made: anti-alias low-pass (or not), then keep every r-th sample.

`make_lowres` is the single definition used by training, evaluation, inference and benchmarks
(REFERENCE section 3), so a model is always evaluated on inputs made exactly like its training
inputs. The filtering runs in torch on the tensor's own device (no round trip through numpy) and
reproduces `scipy.signal.sosfiltfilt` to float64 precision: the same odd-extension padding, the
same `sosfilt_zi` initial conditions, computed section by section with torchaudio's compiled
`lfilter`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch
import torchaudio.functional as AF
from scipy import signal
from torch import Tensor

from audio_superres.dsp.cubic import check_signal
from audio_superres.dsp.degrade import (
    CODECS,
    RESAMPLERS,
    check_mp3_bitrate,
    codec_rows,
    resample_down,
)
from audio_superres.dsp.numeric import work_dtype
from audio_superres.dsp.resample import check_ratio

__all__ = [
    "DESIGNED_KINDS",
    "LOWPASS_KINDS",
    "LowpassSpec",
    "as_lowpass_spec",
    "check_sample_rate",
    "draw_lowpass_specs",
    "crop_to_multiple",
    "describe_lowpass",
    "lowpass_sos",
    "make_lowres",
    "sosfilt_torch",
    "sosfiltfilt_padlen",
    "sosfiltfilt_torch",
]


@dataclass(frozen=True)
class LowpassSpec:
    """Anti-aliasing filter applied before decimation.

    The defaults are `scipy.signal.decimate`'s filter (the original code's `--low-pass`).
    `cutoff` is a fraction of the LOW-RES Nyquist frequency, so one spec serves every ratio: the
    normalised digital cutoff given to scipy is `cutoff / ratio`. What `cutoff` marks depends on
    the family (docs/filters.md): the -3 dB point of one pass for Butterworth and Bessel, the
    passband edge (where the response leaves the ripple band) for Chebyshev I and elliptic.
    `ripple_db` is the passband ripple (Chebyshev I, elliptic), `attenuation_db` the stopband
    attenuation (elliptic).

    Kind "resample" is no IIR filter: the low-res signal is a windowed-sinc / polyphase resampler's
    output (`resampler`: `dsp.degrade.RESAMPLERS`; `cutoff` is its cutoff, `filter_width` the sinc's
    zero crossings per side, `kaiser_beta` its Kaiser window's). `codec` ("none" or "mp3", at
    `bitrate_kbps`) compresses the high-res signal before any kind filters and decimates it
    (`dsp/degrade.py`, docs/filters.md).

    Kind "random" is not one filter but a distribution (NU-Wave 2 style): every example gets its
    own family from `families`, order from `order_range`, ripple from `ripple_range` (log-uniform,
    dB), attenuation from `attenuation_range` and cutoff from `cutoff_range`, drawn from a seeded
    generator (`seed` when the caller gives none), so a draw is reproducible. With the `p_*`
    probabilities above 0 (`lowpass=robust`) an example is instead aliased (`p_none`) or
    resampler-made (`p_resample`: one of `resamplers`, cutoff in `resample_cutoff_range`, width
    in `filter_width_range`, beta in `kaiser_beta_range`), a drawn filter is one pass with
    probability `p_one_pass`, and any of them is MP3-coded first with probability `p_codec` at a
    bitrate of `codec_bitrates`. All `p_*` at 0 draw exactly what this kind always drew.
    """

    kind: str = "chebyshev"
    order: int = 8
    ripple_db: float = 0.05
    cutoff: float = 0.8
    zero_phase: bool = True
    attenuation_db: float = 60.0
    families: tuple[str, ...] = ("chebyshev", "butterworth", "bessel", "elliptic")
    order_range: tuple[int, int] = (2, 10)
    ripple_range: tuple[float, float] = (0.01, 1.0)
    attenuation_range: tuple[float, float] = (40.0, 80.0)
    cutoff_range: tuple[float, float] = (0.6, 1.0)
    seed: int = 0
    resampler: str = "sinc_hann"
    filter_width: int = 6
    kaiser_beta: float = 14.769656459379492  # torchaudio's default
    codec: str = "none"
    bitrate_kbps: float = 64.0
    p_none: float = 0.0
    p_resample: float = 0.0
    p_one_pass: float = 0.0
    p_codec: float = 0.0
    resamplers: tuple[str, ...] = RESAMPLERS
    resample_cutoff_range: tuple[float, float] = (0.85, 1.0)
    filter_width_range: tuple[int, int] = (6, 64)
    kaiser_beta_range: tuple[float, float] = (5.0, 15.0)
    codec_bitrates: tuple[float, ...] = (16.0, 24.0, 32.0, 48.0, 64.0, 96.0)

    def __post_init__(self) -> None:
        # Normalise types so specs built from YAML/CLI values compare and hash like literal ones.
        if not isinstance(self.kind, str):
            raise TypeError(f"lowpass kind must be a string, got {type(self.kind).__name__}")
        kind = self.kind.strip().lower()
        if kind not in LOWPASS_KINDS:
            raise ValueError(
                f"unknown lowpass kind {self.kind!r}; valid kinds: {', '.join(LOWPASS_KINDS)}"
            )
        if isinstance(self.order, bool) or not isinstance(self.order, (int, np.integer)):
            raise TypeError(f"lowpass order must be an integer, got {self.order!r}")
        if self.order < 1:
            raise ValueError(f"lowpass order must be >= 1, got {self.order}")
        ripple_db = float(self.ripple_db)
        if not (math.isfinite(ripple_db) and ripple_db > 0):
            raise ValueError(f"lowpass ripple_db must be a positive number, got {self.ripple_db!r}")
        cutoff = float(self.cutoff)
        if not 0 < cutoff <= 1:
            raise ValueError(
                f"lowpass cutoff is a fraction of the low-res Nyquist and must be in (0, 1], "
                f"got {self.cutoff!r}"
            )
        if not isinstance(self.zero_phase, (bool, np.bool_)):
            raise TypeError(f"lowpass zero_phase must be a bool, got {self.zero_phase!r}")
        attenuation_db = float(self.attenuation_db)
        if not (math.isfinite(attenuation_db) and attenuation_db > 0):
            raise ValueError(
                f"lowpass attenuation_db must be a positive number, got {self.attenuation_db!r}"
            )
        families = tuple(str(f).strip().lower() for f in self.families)
        bad = [f for f in families if f not in DESIGNED_KINDS]
        if not families or bad:
            raise ValueError(
                f"lowpass families must be a non-empty list of {', '.join(DESIGNED_KINDS)}; "
                f"got {list(self.families)!r}"
            )
        order_range = _range(self.order_range, "order_range", int, low=0)
        ripple_range = _range(self.ripple_range, "ripple_range", float, low=0.0)
        attenuation_range = _range(self.attenuation_range, "attenuation_range", float, low=0.0)
        cutoff_range = _range(self.cutoff_range, "cutoff_range", float, low=0.0, high=1.0)
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise TypeError(f"lowpass seed must be an integer, got {self.seed!r}")
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "order", int(self.order))
        object.__setattr__(self, "ripple_db", ripple_db)
        object.__setattr__(self, "cutoff", cutoff)
        object.__setattr__(self, "zero_phase", bool(self.zero_phase))
        object.__setattr__(self, "attenuation_db", attenuation_db)
        object.__setattr__(self, "families", families)
        object.__setattr__(self, "order_range", order_range)
        object.__setattr__(self, "ripple_range", ripple_range)
        object.__setattr__(self, "attenuation_range", attenuation_range)
        object.__setattr__(self, "cutoff_range", cutoff_range)
        object.__setattr__(self, "seed", int(self.seed))
        self._check_degradations()

    def _check_degradations(self) -> None:
        resampler = str(self.resampler).strip().lower()
        resamplers = tuple(str(m).strip().lower() for m in self.resamplers)
        for name in (resampler, *resamplers):
            if name not in RESAMPLERS:
                raise ValueError(
                    f"unknown lowpass resampler {name!r}; valid: {', '.join(RESAMPLERS)}"
                )
        if not resamplers:
            raise ValueError("lowpass resamplers must be a non-empty list")
        if isinstance(self.filter_width, bool) or int(self.filter_width) != self.filter_width:
            raise TypeError(f"lowpass filter_width must be an integer, got {self.filter_width!r}")
        if int(self.filter_width) < 1:
            raise ValueError(f"lowpass filter_width must be >= 1, got {self.filter_width}")
        kaiser_beta = float(self.kaiser_beta)
        if not (math.isfinite(kaiser_beta) and kaiser_beta >= 0):
            raise ValueError(f"lowpass kaiser_beta must be >= 0, got {self.kaiser_beta!r}")
        codec = str(self.codec).strip().lower()
        if codec not in CODECS:
            raise ValueError(f"unknown lowpass codec {self.codec!r}; valid: {', '.join(CODECS)}")
        if self.kind == "random" and codec != "none":
            raise ValueError(
                "lowpass kind 'random' draws its codec: set p_codec and codec_bitrates, not codec"
            )
        bitrates = tuple(float(b) for b in self.codec_bitrates)
        for b in (float(self.bitrate_kbps), *bitrates):
            if not (math.isfinite(b) and b > 0):
                raise ValueError(f"lowpass MP3 bitrates must be positive kbps, got {b!r}")
        if not bitrates:
            raise ValueError("lowpass codec_bitrates must be a non-empty list")
        probs = {}
        for name in ("p_none", "p_resample", "p_one_pass", "p_codec"):
            p = float(getattr(self, name))
            if not 0 <= p <= 1:
                raise ValueError(f"lowpass {name} is a probability in [0, 1], got {p!r}")
            probs[name] = p
        if probs["p_none"] + probs["p_resample"] > 1:
            raise ValueError(
                f"lowpass p_none + p_resample must be <= 1 (the rest draws a filter), got "
                f"{probs['p_none']} + {probs['p_resample']}"
            )
        resample_cutoff_range = _range(
            self.resample_cutoff_range, "resample_cutoff_range", float, low=0.0, high=1.0
        )
        filter_width_range = _range(self.filter_width_range, "filter_width_range", int, low=0)
        kaiser_beta_range = _range(self.kaiser_beta_range, "kaiser_beta_range", float, low=-1e-9)
        object.__setattr__(self, "resampler", resampler)
        object.__setattr__(self, "filter_width", int(self.filter_width))
        object.__setattr__(self, "kaiser_beta", kaiser_beta)
        object.__setattr__(self, "codec", codec)
        object.__setattr__(self, "bitrate_kbps", float(self.bitrate_kbps))
        for name, p in probs.items():
            object.__setattr__(self, name, p)
        object.__setattr__(self, "resamplers", resamplers)
        object.__setattr__(self, "resample_cutoff_range", resample_cutoff_range)
        object.__setattr__(self, "filter_width_range", filter_width_range)
        object.__setattr__(self, "kaiser_beta_range", kaiser_beta_range)
        object.__setattr__(self, "codec_bitrates", bitrates)

    @property
    def draws_degradations(self) -> bool:
        """A "random" spec that draws more than IIR filters (any `p_*` above 0)."""
        return any((self.p_none, self.p_resample, self.p_one_pass, self.p_codec))


def _range(value: Any, name: str, cast: type, low: float, high: float | None = None) -> tuple:
    """A `[min, max]` pair from YAML/CLI, checked (min <= max, low < min, max <= high)."""
    try:
        lo, hi = (cast(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"lowpass {name} must be a [min, max] pair, got {value!r}") from None
    if not (low < lo <= hi) or (high is not None and hi > high):
        limit = f"{low} < min <= max" + (f" <= {high}" if high is not None else "")
        raise ValueError(f"lowpass {name} must satisfy {limit}, got {value!r}")
    return (lo, hi)


# Filter designers: (spec, normalised digital cutoff in (0, 1)) -> sos. A new kind ("bessel",
# "elliptic", ...) is one function here (plus any new field it needs on LowpassSpec).
_Designer = Callable[[LowpassSpec, float], np.ndarray]


def _design_chebyshev(spec: LowpassSpec, wn: float) -> np.ndarray:
    return signal.cheby1(spec.order, spec.ripple_db, wn, output="sos")


def _design_butterworth(spec: LowpassSpec, wn: float) -> np.ndarray:
    return signal.butter(spec.order, wn, output="sos")


def _design_bessel(spec: LowpassSpec, wn: float) -> np.ndarray:
    # norm="mag": `cutoff` is the -3 dB point, as for Butterworth (scipy's default "phase" puts
    # it near 0.53x cutoff at order 8); docs/filters.md
    return signal.bessel(spec.order, wn, norm="mag", output="sos")


def _design_elliptic(spec: LowpassSpec, wn: float) -> np.ndarray:
    return signal.ellip(spec.order, spec.ripple_db, spec.attenuation_db, wn, output="sos")


_DESIGNERS: dict[str, _Designer] = {
    "chebyshev": _design_chebyshev,
    "butterworth": _design_butterworth,
    "bessel": _design_bessel,
    "elliptic": _design_elliptic,
}
DESIGNED_KINDS: tuple[str, ...] = tuple(_DESIGNERS)
LOWPASS_KINDS: tuple[str, ...] = ("none", *_DESIGNERS, "resample", "random")
_SPEC_FIELDS = tuple(f.name for f in dataclasses.fields(LowpassSpec))


def as_lowpass_spec(lowpass: str | LowpassSpec | Mapping[str, Any]) -> LowpassSpec:
    """Accept a kind name, a spec, or a config mapping (Hydra/OmegaConf or dict) as a spec.

    A name gives that kind with the REFERENCE defaults (order 8, 0.05 dB ripple, cutoff 0.8).
    A mapping may carry a Hydra `_target_` key, which is ignored; any other unknown key is an
    error, so a typo in a config cannot silently fall back to a default.
    """
    if isinstance(lowpass, LowpassSpec):
        return lowpass
    if isinstance(lowpass, str):
        return LowpassSpec(kind=lowpass)
    if isinstance(lowpass, Mapping):
        options = {str(k): v for k, v in lowpass.items() if k != "_target_"}
        unknown = sorted(set(options) - set(_SPEC_FIELDS))
        if unknown:
            raise ValueError(
                f"unknown lowpass option(s) {unknown}; valid options: {', '.join(_SPEC_FIELDS)}"
            )
        return LowpassSpec(**options)
    raise TypeError(
        f"lowpass must be a kind name, a LowpassSpec or a mapping, got {type(lowpass).__name__}"
    )


def _span(lo: float, hi: float, unit: str = "") -> str:
    text = f"{lo:g}" if lo == hi else f"{lo:g}-{hi:g}"
    return f"{text} {unit}" if unit else text


def describe_lowpass(lowpass: str | LowpassSpec | Mapping[str, Any]) -> str:
    """A short phrase a person reads: the family and only the knobs it uses.

    `chebyshev (order 8, cutoff 0.8, ripple 0.05 dB, zero phase)`; `no filter (...)`; a
    resampler's kind, cutoff and width; `, then MP3 at 32 kbps` for a codec; for `random` the
    ranges it draws from and the probabilities of its other degradations.
    """
    spec = as_lowpass_spec(lowpass)
    phase = "zero phase" if spec.zero_phase else "one pass"
    codec = f", after MP3 at {spec.bitrate_kbps:g} kbps" if spec.codec != "none" else ""
    if spec.kind == "none":
        return f"no filter (every r-th sample kept, aliased){codec}"
    if spec.kind == "resample":
        beta = f", Kaiser beta {spec.kaiser_beta:g}" if "kaiser" in spec.resampler else ""
        return (
            f"resampler {spec.resampler} (cutoff {spec.cutoff:g}, {spec.filter_width} zero "
            f"crossings{beta}){codec}"
        )
    if spec.kind == "random":
        families = spec.families
        details = [f"order {_span(*spec.order_range)}", f"cutoff {_span(*spec.cutoff_range)}"]
        if {"chebyshev", "elliptic"} & set(families):
            details.append(f"ripple {_span(*spec.ripple_range, 'dB')}")
        if "elliptic" in families:
            details.append(f"attenuation {_span(*spec.attenuation_range, 'dB')}")
        text = f"random per example: {'/'.join(families)} ({', '.join(details)}, {phase}"
        others = [
            f"{name} p={p:g}"
            for name, p in (
                ("no filter", spec.p_none),
                ("a resampler", spec.p_resample),
                ("one pass", spec.p_one_pass),
                (
                    f"MP3 at {_span(min(spec.codec_bitrates), max(spec.codec_bitrates))} kbps",
                    spec.p_codec,
                ),
            )
            if p > 0
        ]
        return text + (f"; {', '.join(others)}" if others else "") + f"; seed {spec.seed})"
    details = [f"order {spec.order}", f"cutoff {spec.cutoff:g}"]
    if spec.kind in ("chebyshev", "elliptic"):
        details.append(f"ripple {spec.ripple_db:g} dB")
    if spec.kind == "elliptic":
        details.append(f"attenuation {spec.attenuation_db:g} dB")
    return f"{spec.kind} ({', '.join(details)}, {phase}){codec}"


def check_sample_rate(spec: LowpassSpec, sample_rate: int) -> None:
    """ValueError when a codec of `spec` (its own, or any a "random" spec can draw) cannot code
    audio at `sample_rate`: checked when a run starts, not at the first coded batch."""
    try:
        if spec.codec != "none":
            check_mp3_bitrate(sample_rate, spec.bitrate_kbps)
    except ValueError as exc:
        raise ValueError(f"lowpass bitrate_kbps: {exc}") from None
    try:
        if spec.kind == "random" and spec.p_codec > 0:
            for bitrate in spec.codec_bitrates:
                check_mp3_bitrate(sample_rate, bitrate)
    except ValueError as exc:
        raise ValueError(f"lowpass codec_bitrates: {exc}") from None


def lowpass_sos(spec: LowpassSpec, ratio: int) -> np.ndarray | None:
    """Second-order sections `(n_sections, 6)` of the anti-alias filter for `ratio`.

    None for kind "none". The design is cached per (spec, ratio); each call returns a fresh copy
    so a caller (or scipy, which wants writable arrays) may modify it freely.
    """
    sos = _lowpass_sos_cached(spec, check_ratio(ratio))
    return None if sos is None else sos.copy()


@lru_cache(maxsize=64)
def _lowpass_sos_cached(spec: LowpassSpec, ratio: int) -> np.ndarray | None:
    if spec.kind == "none":
        return None
    if spec.kind == "resample":
        raise ValueError(
            "lowpass kind 'resample' is a windowed-sinc resampler, not an IIR filter: it has no "
            "second-order sections (make_lowres runs it)"
        )
    if spec.kind == "random":
        raise ValueError(
            "lowpass kind 'random' is a distribution of filters, not one filter: draw concrete "
            "specs with draw_lowpass_specs (make_lowres does this per example)"
        )
    wn = spec.cutoff / ratio
    if not 0 < wn < 1:
        raise ValueError(
            f"lowpass cutoff {spec.cutoff} / ratio {ratio} = {wn} is not a valid digital cutoff "
            "(it must be < 1 times the high-res Nyquist)"
        )
    sos = np.ascontiguousarray(_DESIGNERS[spec.kind](spec, wn), dtype=np.float64)
    sos.flags.writeable = False
    return sos


def crop_to_multiple(y: Tensor, ratio: int) -> Tensor:
    """`y[..., :n - n % ratio]` (a view): HR and LR must line up sample k*ratio <-> k."""
    r = check_ratio(ratio)
    n = y.shape[-1]
    return y[..., : n - n % r]


# ---- second-order sections in torch ---------------------------------------------------------


def _as_sos(sos: np.ndarray) -> np.ndarray:
    arr = np.asarray(sos, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 6 or arr.shape[0] < 1:
        raise ValueError(f"sos must have shape (n_sections, 6), got {np.shape(sos)}")
    if not np.all(arr[:, 3] == 1):
        raise ValueError("sos[:, 3] (each section's a0) must be all ones, as scipy requires")
    return arr


def sosfiltfilt_padlen(sos: np.ndarray) -> int:
    """scipy's default `sosfiltfilt` padding: 3 * (2 * sections + 1 - trailing zero taps)."""
    sos = _as_sos(sos)
    ntaps = 2 * len(sos) + 1 - min(int((sos[:, 2] == 0).sum()), int((sos[:, 5] == 0).sum()))
    return 3 * ntaps


@lru_cache(maxsize=64)
def _sos_tensors(
    key: bytes, n_sections: int, device: torch.device, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """(a, b) for the zero-state cascade and (a, [zi0, zi1, 0]) for its zero-input response.

    Cached constants are built outside inference mode (Lightning validates under it), so a later
    autograd use of them works.
    """
    sos = np.frombuffer(key, dtype=np.float64).reshape(n_sections, 6).copy()
    zi = np.zeros((n_sections, 3))
    zi[:, :2] = signal.sosfilt_zi(sos)
    with torch.inference_mode(False):
        coeffs = torch.as_tensor(sos, dtype=dtype, device=device)
        zi_b = torch.as_tensor(zi, dtype=dtype, device=device)
    return coeffs, zi_b


def _cascade(x: Tensor, coeffs: Tensor) -> Tensor:
    """Zero-initial-state cascade of biquads along the last axis (x is 2-D)."""
    for b, a in zip(coeffs[:, :3], coeffs[:, 3:], strict=True):
        x = AF.lfilter(x, a, b, clamp=False)
    return x


@lru_cache(maxsize=32)
def _zero_input_response(
    key: bytes, n_sections: int, length: int, device: torch.device, dtype: torch.dtype
) -> Tensor:
    """Output of the cascade for zero input started from the state `sosfilt_zi(sos)`.

    In scipy's direct form II transposed, a section with state (z0, z1) and zero input outputs
    y0 = z0, y1 = z1 - a1 y0, then y_k = -a1 y_{k-1} - a2 y_{k-2}: exactly the impulse response
    of numerator [z0, z1, 0] over the section's denominator. By linearity the whole cascade with
    initial states c * zi equals (zero-state cascade of the input) + c * this response, where
    each section's own response is also fed through the sections after it.
    """
    coeffs, zi_b = _sos_tensors(key, n_sections, device, dtype)
    with torch.inference_mode(False), torch.no_grad():
        delta = torch.zeros(n_sections, length, dtype=dtype, device=device)
        delta[:, 0] = 1
        # every section's own zero-input response in one call (one filter per row)
        own = AF.lfilter(delta, coeffs[:, 3:], zi_b, clamp=False)
        g = own[:1]
        for s in range(1, n_sections):
            g = AF.lfilter(g, coeffs[s, 3:], coeffs[s, :3], clamp=False) + own[s : s + 1]
    return g[0]


def _prepare(x: Tensor, sos: np.ndarray) -> tuple[np.ndarray, bytes, Tensor, torch.dtype]:
    check_signal(x)
    sos = _as_sos(sos)
    work = work_dtype(x.device)
    return sos, sos.tobytes(), x.reshape(math.prod(x.shape[:-1]), x.shape[-1]).to(work), work


def sosfilt_torch(x: Tensor, sos: np.ndarray) -> Tensor:
    """Causal `scipy.signal.sosfilt(sos, x, axis=-1)` with zero initial state, on x's device.

    Zero initial state is what `scipy.signal.decimate(..., zero_phase=False)` uses; it delays
    the signal by the filter's group delay, which is why zero phase is the default elsewhere.
    """
    sos, key, flat, work = _prepare(x, sos)
    coeffs, _ = _sos_tensors(key, len(sos), flat.device, work)
    y = _cascade(flat, coeffs)
    return y.to(x.dtype).reshape(x.shape)


def sosfiltfilt_torch(x: Tensor, sos: np.ndarray) -> Tensor:
    """`scipy.signal.sosfiltfilt(sos, x, axis=-1)` (default odd padding), batched, on x's device.

    Computed in float64 (cast back to x's dtype), so it matches scipy to ~1e-12 even for r=8.
    Raises ValueError when the signal is not longer than scipy's padlen.
    """
    sos, key, flat, work = _prepare(x, sos)
    n = flat.shape[-1]
    edge = sosfiltfilt_padlen(sos)
    if n <= edge:
        raise ValueError(
            f"signal too short for the filter: length {n} must be greater than the filter's "
            f"padlen {edge}"
        )
    # odd extension (scipy.signal._arraytools.odd_ext)
    left = 2 * flat[:, :1] - flat[:, 1 : edge + 1].flip(-1)
    right = 2 * flat[:, -1:] - flat[:, -edge - 1 : -1].flip(-1)
    ext = torch.cat([left, flat, right], dim=-1)
    coeffs, _ = _sos_tensors(key, len(sos), flat.device, work)
    zir = _zero_input_response(key, len(sos), ext.shape[-1], flat.device, work)
    y = _cascade(ext, coeffs) + ext[:, :1] * zir
    y = y.flip(-1)
    y = _cascade(y, coeffs) + y[:, :1] * zir
    y = y.flip(-1)[:, edge:-edge]
    return y.to(x.dtype).reshape(x.shape)


# ---- the low-res input ----------------------------------------------------------------------


def draw_lowpass_specs(
    spec: LowpassSpec, n: int, rng: np.random.Generator | None = None
) -> list[LowpassSpec]:
    """`n` concrete specs drawn from a "random" spec (a concrete spec is repeated n times).

    Families, orders, ripples (log-uniform), attenuations and cutoffs are drawn from `rng`, or
    from a generator seeded with `spec.seed` when none is given, so the same call gives the same
    filters. With `spec.draws_degradations` each example first draws what it is (aliased,
    resampler-made or filtered; one pass or zero phase; MP3-coded or not; docs/filters.md);
    without, the draws are exactly the filter draws above (old runs keep their stream).
    """
    spec = as_lowpass_spec(spec)
    if spec.kind != "random":
        return [spec] * n
    rng = np.random.default_rng(spec.seed) if rng is None else rng
    if spec.draws_degradations:
        return [_draw_degradation(spec, rng) for _ in range(n)]
    return [_draw_filter(spec, rng, spec.zero_phase) for _ in range(n)]


def _draw_filter(spec: LowpassSpec, rng: np.random.Generator, zero_phase: bool) -> LowpassSpec:
    family = spec.families[int(rng.integers(len(spec.families)))]
    order = int(rng.integers(spec.order_range[0], spec.order_range[1] + 1))
    log_ripple = rng.uniform(np.log(spec.ripple_range[0]), np.log(spec.ripple_range[1]))
    attenuation = float(rng.uniform(*spec.attenuation_range))
    cutoff = float(rng.uniform(*spec.cutoff_range))
    return LowpassSpec(
        kind=family,
        order=order,
        ripple_db=float(np.exp(log_ripple)),
        cutoff=round(cutoff, 4),
        zero_phase=zero_phase,
        attenuation_db=attenuation,
    )


def _draw_degradation(spec: LowpassSpec, rng: np.random.Generator) -> LowpassSpec:
    """One example of the extended distribution: what makes the LR, then whether it is coded."""
    u = float(rng.random())
    if u < spec.p_none:
        drawn = LowpassSpec(kind="none")
    elif u < spec.p_none + spec.p_resample:
        resampler = spec.resamplers[int(rng.integers(len(spec.resamplers)))]
        cutoff = float(rng.uniform(*spec.resample_cutoff_range))
        width = int(rng.integers(spec.filter_width_range[0], spec.filter_width_range[1] + 1))
        beta = float(rng.uniform(*spec.kaiser_beta_range))
        drawn = LowpassSpec(
            kind="resample",
            resampler=resampler,
            cutoff=round(cutoff, 4),
            filter_width=width,
            kaiser_beta=round(beta, 4),
        )
    else:
        zero_phase = spec.zero_phase
        if spec.p_one_pass > 0:
            zero_phase = bool(rng.random() >= spec.p_one_pass)
        drawn = _draw_filter(spec, rng, zero_phase)
    if spec.p_codec > 0 and rng.random() < spec.p_codec:
        bitrate = spec.codec_bitrates[int(rng.integers(len(spec.codec_bitrates)))]
        drawn = dataclasses.replace(drawn, codec="mp3", bitrate_kbps=bitrate)
    return drawn


def make_lowres(
    y: Tensor,
    ratio: int,
    lowpass: str | LowpassSpec | Mapping[str, Any] = "chebyshev",
    rng: np.random.Generator | None = None,
    sample_rate: int | None = None,
) -> Tensor:
    """Low-res input `(..., n // ratio)` from high-res `y` `(..., n)` (REFERENCE section 3).

    Crops n to a multiple of `ratio`, low-passes along the last axis (none / chebyshev /
    butterworth / bessel / elliptic, zero phase by default), then keeps samples 0, r, 2r, ...
    Kind "resample" is a resampler's output instead; a spec with `codec: mp3` MP3-codes the
    high-res signal first, which needs `sample_rate` (the rate of `y`; `dsp/degrade.py`).
    Kind "random" draws one spec per row of `y` from `rng` (see `draw_lowpass_specs`).
    Ratio 1 returns `y` itself. The result has y's dtype and device and is a fresh contiguous
    tensor otherwise.
    """
    r = check_ratio(ratio)
    spec = as_lowpass_spec(lowpass)
    if not isinstance(y, Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(y).__name__}")
    if y.ndim == 0:
        raise ValueError("expected a signal of shape (..., n), got a 0-d tensor")
    if r == 1:
        return y
    y = crop_to_multiple(y, r)
    if spec.kind == "random":
        rows = y.reshape(-1, y.shape[-1])
        specs = draw_lowpass_specs(spec, rows.shape[0], rng)
        out = [
            _filter_and_decimate(row[None], r, s, sample_rate)[0]
            for row, s in zip(rows, specs, strict=True)
        ]
        return torch.stack(out).reshape(*y.shape[:-1], -1)
    return _filter_and_decimate(y, r, spec, sample_rate)


def _filter_and_decimate(
    y: Tensor, r: int, spec: LowpassSpec, sample_rate: int | None = None
) -> Tensor:
    if spec.codec != "none":
        y = codec_rows(y, spec.codec, sample_rate, spec.bitrate_kbps)
    if spec.kind == "resample":
        out = resample_down(y, r, spec.resampler, spec.cutoff, spec.filter_width, spec.kaiser_beta)
        return out[..., : y.shape[-1] // r].contiguous()
    sos = _lowpass_sos_cached(spec, r)
    if sos is not None:
        if spec.zero_phase:
            padlen = sosfiltfilt_padlen(sos)
            if y.shape[-1] <= padlen:
                raise ValueError(
                    f"signal too short for the {spec.kind} low-pass filter at ratio {r}: "
                    f"length {y.shape[-1]} (after cropping to a multiple of {r}) must be greater "
                    f"than the filter's padlen {padlen}"
                )
            y = sosfiltfilt_torch(y, sos)
        else:
            y = sosfilt_torch(y, sos)
    return y[..., ::r].contiguous()


def lowpass_to_dict(spec: LowpassSpec) -> dict[str, Any]:
    """Plain fields (tuples as lists), so hparams.yaml and checkpoints stay safe to load."""
    return {
        k: list(v) if isinstance(v, tuple) else v
        for k, v in ((k, getattr(spec, k)) for k in spec.__dataclass_fields__)
    }
