"""Degradations real low-res recordings carry besides an IIR anti-alias filter.

Used only through `dsp.lowpass.make_lowres` (the one way a low-res input is made):

- resampler-made input (`kind: resample`): the low-res signal is a windowed-sinc / polyphase FIR
  resampler's output at `sr / r`, as torchaudio (`sinc_hann`, `sinc_kaiser`:
  `torchaudio.functional.resample`) and scipy (`poly_kaiser`: `scipy.signal.resample_poly`'s
  Kaiser-windowed `firwin` design, reproduced here in torch) make it. All run on the tensor's
  own device and are zero phase: low-res sample k sits at high-res position k*r, as for the
  filters.
- a lossy codec (`codec: mp3`): MPEG-1/2 layer III through libsndfile (LAME to encode, mpg123 to
  decode), in memory, applied to the HIGH-RES signal before it is filtered and decimated (a real
  recording is compressed at the rate it is stored at and brought to the model's rate later; MP3
  has no mode below 8 kHz, so the demo's 4 kHz low-res signal could not be an MP3 stream itself).
  The encoder's delay and padding are measured once per (sample rate, bitrate) with a probe signal
  and removed, so the decoded signal is sample-aligned with its input and has its length. This
  runs on the CPU in numpy (about 3 ms per 8192-sample row; docs/filters.md); a tensor on another
  device is copied to the CPU and back.
"""

from __future__ import annotations

import io
import math
from functools import lru_cache

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
from scipy import signal
from torch import Tensor

__all__ = [
    "CODECS",
    "check_mp3_bitrate",
    "MP3_SAMPLE_RATES",
    "RESAMPLERS",
    "mp3_bitrate_range",
    "mp3_delay",
    "mp3_roundtrip",
    "codec_rows",
    "poly_taps",
    "resample_down",
    "resampler_context",
]

RESAMPLERS: tuple[str, ...] = ("sinc_hann", "sinc_kaiser", "poly_kaiser")
CODECS: tuple[str, ...] = ("none", "mp3")
# the rates MPEG-1 (32-48 kHz), MPEG-2 (16-24 kHz) and MPEG-2.5 (8-12 kHz) layer III code
MP3_SAMPLE_RATES: tuple[int, ...] = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)


# ---- resamplers ---------------------------------------------------------------------------


@lru_cache(maxsize=32)
def _poly_taps_cached(ratio: int, cutoff: float, filter_width: int, beta: float) -> np.ndarray:
    taps = signal.firwin(2 * filter_width * ratio + 1, cutoff / ratio, window=("kaiser", beta))
    taps.flags.writeable = False
    return taps


def poly_taps(ratio: int, cutoff: float, filter_width: int, beta: float) -> np.ndarray:
    """`scipy.signal.resample_poly(x, 1, ratio)`'s filter with these settings: `firwin` of
    `2 * filter_width * ratio + 1` taps, cutoff `cutoff / ratio` of the high-res Nyquist, Kaiser
    window `beta` (scipy's defaults: filter_width 10, cutoff 1.0, beta 5.0)."""
    return _poly_taps_cached(int(ratio), float(cutoff), int(filter_width), float(beta)).copy()


def resampler_context(ratio: int, resampler: str, cutoff: float, filter_width: int) -> int:
    """High-res samples the resampler's kernel reaches on each side of an output sample."""
    if resampler == "poly_kaiser":
        return filter_width * ratio
    # torchaudio: lowpass_filter_width zero crossings of the sinc scaled by the rolloff
    return math.ceil(filter_width * ratio / cutoff) + ratio


def resample_down(
    y: Tensor, ratio: int, resampler: str, cutoff: float, filter_width: int, beta: float
) -> Tensor:
    """`y (..., n)` -> `(..., ceil(n / ratio))` through one of `RESAMPLERS`, on y's device.

    `cutoff` is the filter's cutoff as a fraction of the low-res Nyquist (torchaudio's `rolloff`;
    for `poly_kaiser` the `firwin` cutoff), `filter_width` the zero crossings of the sinc on each
    side (torchaudio's `lowpass_filter_width`; scipy's `half_len / ratio`, 10 by default) and `beta`
    the Kaiser window's (ignored by `sinc_hann`). The signal is zero-padded at both ends, as both
    libraries do.
    """
    if resampler in ("sinc_hann", "sinc_kaiser"):
        return AF.resample(
            y,
            orig_freq=ratio,
            new_freq=1,
            lowpass_filter_width=filter_width,
            rolloff=cutoff,
            resampling_method=f"sinc_interp_{resampler.split('_')[1]}",
            beta=beta if resampler == "sinc_kaiser" else None,
        )
    if resampler != "poly_kaiser":
        raise ValueError(f"unknown resampler {resampler!r}; valid: {', '.join(RESAMPLERS)}")
    taps = poly_taps(ratio, cutoff, filter_width, beta)
    half = (len(taps) - 1) // 2
    flat = y.reshape(-1, 1, y.shape[-1])
    kernel = torch.as_tensor(taps, dtype=y.dtype, device=y.device).flip(0)[None, None]
    padded = torch.nn.functional.pad(flat, (half, half))
    out = torch.nn.functional.conv1d(padded, kernel, stride=ratio)
    return out.reshape(*y.shape[:-1], out.shape[-1])


# ---- MP3 ---------------------------------------------------------------------------------


def mp3_bitrate_range(sample_rate: int) -> tuple[int, int]:
    """The CBR bitrates (kbps) layer III has at `sample_rate`: MPEG-1 32-320, MPEG-2 8-160,
    MPEG-2.5 8-64 (libsndfile maps its compression level linearly onto this range)."""
    if int(sample_rate) not in MP3_SAMPLE_RATES:
        raise ValueError(
            f"MP3 cannot code {sample_rate} Hz audio; MPEG layer III rates: "
            f"{', '.join(map(str, MP3_SAMPLE_RATES))}"
        )
    if sample_rate >= 32000:
        return (32, 320)
    if sample_rate >= 16000:
        return (8, 160)
    return (8, 64)


def check_mp3_bitrate(sample_rate: int, bitrate_kbps: float) -> tuple[int, int]:
    """ValueError unless layer III codes `sample_rate` at `bitrate_kbps`; its bitrate range."""
    lo, hi = mp3_bitrate_range(sample_rate)
    if not lo <= bitrate_kbps <= hi:
        raise ValueError(
            f"MP3 bitrate {bitrate_kbps:g} kbps is outside layer III's {lo}-{hi} kbps at "
            f"{sample_rate} Hz"
        )
    return lo, hi


def _compression_level(sample_rate: int, bitrate_kbps: float) -> float:
    lo, hi = check_mp3_bitrate(sample_rate, bitrate_kbps)
    # libsndfile: bitrate = int(hi - level * (hi - lo)), then LAME takes the nearest CBR rate;
    # half a kbps of margin keeps the truncation on the asked rate (level 1.0 is refused)
    return float(min(max((hi - bitrate_kbps - 0.5) / (hi - lo), 0.0), 1.0 - 0.25 / (hi - lo)))


def _encode_decode(x: np.ndarray, sample_rate: int, bitrate_kbps: float) -> np.ndarray:
    buf = io.BytesIO()
    sf.write(
        buf,
        x,
        sample_rate,
        format="MP3",
        subtype="MPEG_LAYER_III",
        compression_level=_compression_level(sample_rate, bitrate_kbps),
        bitrate_mode="CONSTANT",
    )
    buf.seek(0)
    out, _ = sf.read(buf, dtype="float32", always_2d=False)
    return np.asarray(out, dtype=np.float32).reshape(-1)


PROBE_SECONDS = 0.5
MAX_DELAY = 8192  # samples; LAME's own delay is 576 + 529 = 1105


@lru_cache(maxsize=64)
def mp3_delay(sample_rate: int, bitrate_kbps: float) -> int:
    """Samples the decoded stream lags its input, measured on a seeded probe (cross-correlation
    peak). 0 where libsndfile's decoder already trims LAME's delay (its info tag); 1105 (LAME's
    encoder delay) at the low bitrates where it does not (measured: <= 32 kbps at 16 kHz)."""
    rng = np.random.default_rng(0)
    n = int(PROBE_SECONDS * sample_rate)
    sos = signal.butter(4, 0.2, output="sos")  # well inside every bitrate's bandwidth
    probe = (0.2 * signal.sosfilt(sos, rng.standard_normal(n))).astype(np.float32)
    decoded = _encode_decode(probe, sample_rate, bitrate_kbps)
    corr = signal.correlate(decoded[: n + MAX_DELAY], probe, mode="full", method="fft")
    lags = signal.correlation_lags(min(len(decoded), n + MAX_DELAY), n, mode="full")
    keep = (lags >= 0) & (lags <= MAX_DELAY)
    lag = int(lags[keep][np.argmax(corr[keep])])
    peak = float(corr[keep].max()) / float(np.dot(probe, probe))
    if peak < 0.5:
        raise RuntimeError(
            f"cannot measure the MP3 delay at {sample_rate} Hz, {bitrate_kbps:g} kbps "
            f"(correlation {peak:.2f})"
        )
    return lag


def mp3_roundtrip(x: np.ndarray, sample_rate: int, bitrate_kbps: float) -> np.ndarray:
    """`x (n,)` encoded to CBR MP3 at `bitrate_kbps` and decoded, in memory: float32 `(n,)`,
    sample-aligned with `x` (the measured `mp3_delay` removed, the padding cut). A signal
    peaking above full scale is scaled down for the encoder and back up after."""
    x = np.asarray(x, dtype=np.float32).reshape(-1)
    n = len(x)
    peak = float(np.max(np.abs(x))) if n else 0.0
    scale = peak / 0.98 if peak > 0.98 else 1.0
    decoded = _encode_decode(x / scale, int(sample_rate), float(bitrate_kbps))
    delay = mp3_delay(int(sample_rate), float(bitrate_kbps))
    out = decoded[delay : delay + n]
    if len(out) < n:
        out = np.pad(out, (0, n - len(out)))
    return out * np.float32(scale)


def codec_rows(y: Tensor, codec: str, sample_rate: int | None, bitrate_kbps: float) -> Tensor:
    """Every row of `y (..., n)` through `codec` (CPU, numpy), returned on y's device/dtype."""
    if codec == "none":
        return y
    if codec != "mp3":
        raise ValueError(f"unknown codec {codec!r}; valid: {', '.join(CODECS)}")
    if sample_rate is None:
        raise ValueError(
            "codec mp3 needs the high-res sample rate: pass sample_rate= to make_lowres"
        )
    rows = y.detach().reshape(-1, y.shape[-1]).to("cpu", torch.float32).numpy()
    out = np.stack([mp3_roundtrip(row, sample_rate, bitrate_kbps) for row in rows])
    return torch.from_numpy(out).to(device=y.device, dtype=y.dtype).reshape(y.shape)
