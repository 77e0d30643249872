"""The one implementation of the evaluation metrics (REFERENCE section 5).

Training, evaluation, inference and benchmarks all import from here so that every number the
project reports is computed the same way. Two layers:

* functional forms (``snr``, ``si_sdr``, ``lsd``, ``lsd_hf``, ``lsd_lf``, ``lsd_paper``,
  ``compute_metrics``) that take ``(B, T)`` or ``(T,)`` tensors on any device and return one
  value per utterance;
* ``torchmetrics.Metric`` classes (``SNR``, ``SISDR``, ``LSD``, ``LSDHF``, ``LSDLF``,
  ``LSDPaper``) and the ``SuperResMetrics`` collection that average those per-utterance values
  over a whole dataset (utterance-level averaging, as the papers do; also correct under DDP);
* the perceptual metrics, wideband PESQ and STOI (``pesq_wb``, ``stoi``,
  ``perceptual_metrics_many``): the reference implementations (``pesq``, ``pystoi``) through
  torchmetrics, per file on the CPU at 16 kHz, NaN (with the reason) where they are undefined.

``METRIC_KEYS`` (always computed) and ``PERCEPTUAL_KEYS`` (optional, slower) name the results
everywhere: the LightningModule's logs, metrics.json, per_file.csv, mismatch.csv, the samples
page and the sweep summaries all take their columns from them, so a metric added here appears in
every table at once.

All spectral metrics use one STFT: n_fft 2048, hop 512, periodic Hann window, centred with
reflect padding, no normalisation (librosa / ``scipy.signal.get_window('hann', 2048)``). The
reflect padding follows ``numpy.pad(mode="reflect")``, which also defines it for signals shorter
than ``n_fft // 2 + 1`` samples (where ``torch.stft``'s own reflect padding fails), so any
non-empty signal is accepted.

Everything is computed in float64 (float32 on MPS, which has no float64) so that results do not
depend on the device or on the input dtype; the returned tensors have that dtype.
"""

from __future__ import annotations

import functools
import math
import warnings
from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric, MetricCollection

__all__ = [
    "ALL_METRIC_KEYS",
    "HIGHER_IS_BETTER",
    "HOP_LENGTH",
    "LOG_POWER_FLOOR",
    "LSD",
    "LSDHF",
    "LSDLF",
    "METRIC_KEYS",
    "METRIC_LABELS",
    "N_FFT",
    "PAPER_LOG_EPS",
    "PAPER_LSD_MAX",
    "PERCEPTUAL_KEYS",
    "PERCEPTUAL_RATE",
    "SISDR",
    "SNR",
    "SNR_EPS",
    "LSDPaper",
    "PerceptualScores",
    "SuperResMetrics",
    "compute_metrics",
    "compute_metrics_many",
    "hf_start_bin",
    "lsd",
    "lsd_hf",
    "lsd_lf",
    "lsd_paper",
    "perceptual_metrics_many",
    "pesq_wb",
    "si_sdr",
    "snr",
    "stoi",
]

METRIC_KEYS = ("snr", "si_sdr", "lsd", "lsd_hf", "lsd_lf", "lsd_paper")
"""Per-utterance metrics computed on every evaluation (`compute_metrics`), in table order."""
PERCEPTUAL_KEYS = ("pesq", "stoi")
"""Perceptual metrics, computed per file on the CPU when asked for (`perceptual_metrics_many`)."""
ALL_METRIC_KEYS = METRIC_KEYS + PERCEPTUAL_KEYS
"""Every metric key, in the order tables show them."""
METRIC_LABELS = {
    "snr": "SNR (dB)",
    "si_sdr": "SI-SDR (dB)",
    "lsd": "LSD",
    "lsd_hf": "LSD-HF",
    "lsd_lf": "LSD-LF",
    "lsd_paper": "LSD (paper)",
    "pesq": "PESQ-WB",
    "stoi": "STOI",
}
"""Column headers of the tables."""
HIGHER_IS_BETTER = frozenset({"snr", "si_sdr", "pesq", "stoi"})
"""Keys where a larger value is better (the LSDs are distances: lower is better)."""

N_FFT = 2048
"""STFT size of every spectral metric (REFERENCE section 5)."""
HOP_LENGTH = 512
"""STFT hop of every spectral metric."""
N_BINS = N_FFT // 2 + 1
LOG_POWER_FLOOR = 1e-8
"""Standard LSD: power is floored at this value before ``log10``."""
PAPER_LOG_EPS = 1e-8
"""Paper LSD: added to the power before ``ln`` and to the mean squared difference before sqrt."""
PAPER_LSD_MAX = 10.0
"""Paper LSD: the 2017 code clipped each utterance's value at 10."""
SNR_EPS = 1e-12
"""SNR: added to numerator and denominator so silence and perfect predictions stay finite."""
PERCEPTUAL_RATE = 16000
"""PESQ (wideband, ITU-T P.862.2) is defined at 16 kHz: other rates are resampled to it first;
STOI is computed at the same rate so both see the same signals."""


# --------------------------------------------------------------------------------------------
# helpers


def _compute_dtype(device: torch.device) -> torch.dtype:
    """float64 everywhere for device-independent numbers; MPS has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


def _prepare(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor, bool]:
    """Validate a ``(pred, target)`` pair and return them as ``(B, T)`` in the compute dtype.

    The bool says whether the input was 1-D (the caller then returns 0-d tensors).
    """
    if not isinstance(pred, Tensor) or not isinstance(target, Tensor):
        raise TypeError("pred and target must be torch tensors")
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, got {tuple(pred.shape)} "
            f"and {tuple(target.shape)}"
        )
    if pred.ndim not in (1, 2):
        raise ValueError(
            f"expected audio of shape (B, T) or (T,), got {pred.ndim}-D shape {tuple(pred.shape)}"
        )
    if pred.shape[-1] == 0:
        raise ValueError("cannot compute metrics of empty signals (T == 0)")
    for name, x in (("pred", pred), ("target", target)):
        if not x.is_floating_point():
            raise TypeError(f"{name} must be a real floating-point tensor, got {x.dtype}")
    dtype = _compute_dtype(pred.device)
    squeeze = pred.ndim == 1
    pred = pred.to(dtype).reshape(-1, pred.shape[-1])
    target = target.to(dtype).reshape(-1, target.shape[-1])
    return pred, target, squeeze


def _finish(values: Tensor, squeeze: bool) -> Tensor:
    return values.squeeze(0) if squeeze else values


@functools.lru_cache(maxsize=16)
def _hann_window(device: torch.device, dtype: torch.dtype) -> Tensor:
    """Periodic Hann window (as librosa / scipy ``get_window``), cached per device and dtype."""
    return torch.hann_window(N_FFT, periodic=True, dtype=dtype, device=device)


def _reflect_index(length: int, device: torch.device) -> Tensor:
    """Indices implementing ``numpy.pad(x, N_FFT // 2, mode="reflect")`` for any length.

    Reflection without repeating the edge sample is periodic with period ``2 (T - 1)``; unlike
    ``torch.nn.functional.pad`` this also works when the pad is longer than the signal.
    """
    pad = N_FFT // 2
    idx = torch.arange(-pad, length + pad, device=device)
    if length == 1:
        return torch.zeros_like(idx)
    period = 2 * (length - 1)
    idx = idx.remainder(period)
    return torch.where(idx >= length, period - idx, idx)


def _power_spectrogram(x: Tensor) -> Tensor:
    """``|STFT|^2`` of ``(B, T)`` audio as ``(B, N_BINS, frames)``: THE STFT of every LSD."""
    padded = x[:, _reflect_index(x.shape[-1], x.device)]
    spec = torch.stft(
        padded,
        n_fft=N_FFT,
        hop_length=HOP_LENGTH,
        win_length=N_FFT,
        window=_hann_window(x.device, x.dtype),
        center=False,  # padded above, numpy-style
        normalized=False,
        onesided=True,
        return_complex=True,
    )
    return spec.real.square() + spec.imag.square()


def _log10_power(power: Tensor) -> Tensor:
    """Standard-form log power: ``log10(max(P, 1e-8))``."""
    return torch.log10(power.clamp_min(LOG_POWER_FLOOR))


def _ln_power(power: Tensor) -> Tensor:
    """Paper-form log power: ``ln(P + 1e-8)``."""
    return torch.log(power + PAPER_LOG_EPS)


def _lsd_from_log(
    log_target: Tensor, log_pred: Tensor, start_bin: int = 0, stop_bin: int | None = None
) -> Tensor:
    """Mean over frames of the RMS (over bins ``start_bin <= k < stop_bin``) log-power error."""
    diff = log_target[:, start_bin:stop_bin, :] - log_pred[:, start_bin:stop_bin, :]
    return diff.square().mean(dim=1).sqrt().mean(dim=1)


def _si_sdr_from_centred(pred: Tensor, target: Tensor, target_energy: Tensor) -> Tensor:
    """SI-SDR of zero-mean rows: project the prediction on the target, compare the two parts.

    ``alpha = <yhat, y> / ||y||^2``; ``10 log10(||alpha y||^2 / ||alpha y - yhat||^2)``, with the
    machine epsilon of the compute dtype added as torchmetrics does (silence stays finite).
    """
    eps = torch.finfo(pred.dtype).eps
    alpha = ((pred * target).sum(dim=-1, keepdim=True) + eps) / (target_energy[:, None] + eps)
    projection = alpha * target
    residual = projection - pred
    ratio = (projection.square().sum(dim=-1) + eps) / (residual.square().sum(dim=-1) + eps)
    return 10.0 * torch.log10(ratio)


def _centred(x: Tensor) -> Tensor:
    return x - x.mean(dim=-1, keepdim=True)


def _lsd_paper_from_log(log_target: Tensor, log_pred: Tensor) -> Tensor:
    """Transposed averaging of the 2017 code, with its eps and its clip at 10."""
    per_bin = ((log_target - log_pred).square().mean(dim=2) + PAPER_LOG_EPS).sqrt()
    return per_bin.mean(dim=1).clamp_max(PAPER_LSD_MAX)


def hf_start_bin(ratio: float) -> int:
    """First STFT bin counted by LSD-HF: ``int(1025 / ratio)``, the low-res Nyquist bin.

    ``ratio`` is the upsampling ratio (HR rate / LR rate) and must be > 1.
    """
    if not ratio > 1:
        raise ValueError(f"ratio must be > 1 (HR rate / LR rate), got {ratio!r}")
    return int(N_BINS / ratio)


# --------------------------------------------------------------------------------------------
# functional forms


def snr(pred: Tensor, target: Tensor) -> Tensor:
    """Per-utterance SNR in dB: ``10 log10((sum y^2 + eps) / (sum (y - yhat)^2 + eps))``.

    ``eps = SNR_EPS = 1e-12`` keeps silence and perfect predictions finite (identical signals
    give a large finite value, two silent signals 0 dB); on ordinary audio it changes the result
    by far less than 1e-3 dB. Returns ``(B,)``, or a 0-d tensor for 1-D input.
    """
    pred, target, squeeze = _prepare(pred, target)
    signal = target.square().sum(dim=-1)
    noise = (target - pred).square().sum(dim=-1)
    return _finish(10.0 * torch.log10((signal + SNR_EPS) / (noise + SNR_EPS)), squeeze)


def si_sdr(pred: Tensor, target: Tensor) -> Tensor:
    """Per-utterance scale-invariant SDR in dB (Le Roux et al. 2019).

    Equals torchmetrics' ``scale_invariant_signal_distortion_ratio(..., zero_mean=True)``.

    Both signals have their mean removed; the target is scaled by the least-squares gain
    ``alpha = <yhat, y> / ||y||^2`` and ``SI-SDR = 10 log10(||alpha y||^2 / ||alpha y - yhat||^2)``.
    Unlike SNR it ignores the output's gain. Returns ``(B,)``, or a 0-d tensor for 1-D input.
    """
    pred, target, squeeze = _prepare(pred, target)
    target = _centred(target)
    value = _si_sdr_from_centred(_centred(pred), target, target.square().sum(dim=-1))
    return _finish(value, squeeze)


def lsd(pred: Tensor, target: Tensor) -> Tensor:
    """Per-utterance log-spectral distance, standard form (NU-Wave, AERO, AP-BWE).

    ``P = log10(max(|STFT|^2, 1e-8))``; mean over frames of the RMS over all 1025 bins of
    ``P_y - P_yhat``. 0 for identical signals. Returns ``(B,)`` or 0-d for 1-D input.
    """
    pred, target, squeeze = _prepare(pred, target)
    log_p = _log10_power(_power_spectrogram(pred))
    log_t = _log10_power(_power_spectrogram(target))
    return _finish(_lsd_from_log(log_t, log_p), squeeze)


def lsd_hf(pred: Tensor, target: Tensor, ratio: float) -> Tensor:
    """Standard LSD restricted to bins ``>= int(1025 / ratio)``: the band the model must invent.

    Returns ``(B,)`` or 0-d for 1-D input.
    """
    start = hf_start_bin(ratio)
    pred, target, squeeze = _prepare(pred, target)
    log_p = _log10_power(_power_spectrogram(pred))
    log_t = _log10_power(_power_spectrogram(target))
    return _finish(_lsd_from_log(log_t, log_p, start), squeeze)


def lsd_lf(pred: Tensor, target: Tensor, ratio: float) -> Tensor:
    """Standard LSD restricted to bins ``< int(1025 / ratio)``: the band the model was given.

    How much a model disturbs the low band it received (near 0 for one that keeps it).
    Returns ``(B,)`` or 0-d for 1-D input.
    """
    stop = hf_start_bin(ratio)
    pred, target, squeeze = _prepare(pred, target)
    log_p = _log10_power(_power_spectrogram(pred))
    log_t = _log10_power(_power_spectrogram(target))
    return _finish(_lsd_from_log(log_t, log_p, 0, stop), squeeze)


def lsd_paper(pred: Tensor, target: Tensor) -> Tensor:
    """Per-utterance LSD as the 2017 code computed it, only to compare with its table.

    ``S = ln(|STFT|^2 + 1e-8)``; mean over bins of ``sqrt(mean over frames of (S_y - S_yhat)^2
    + 1e-8)``, clipped at 10. Identical signals give ``1e-4`` (the eps), not 0. NOT comparable
    with :func:`lsd`. Returns ``(B,)`` or 0-d for 1-D input.
    """
    pred, target, squeeze = _prepare(pred, target)
    log_p = _ln_power(_power_spectrogram(pred))
    log_t = _ln_power(_power_spectrogram(target))
    return _finish(_lsd_paper_from_log(log_t, log_p), squeeze)


def compute_metrics(pred: Tensor, target: Tensor, ratio: float) -> dict[str, Tensor]:
    """All per-utterance metrics of `METRIC_KEYS` at once, sharing one STFT per signal.

    Returns ``{"snr", "si_sdr", "lsd", "lsd_hf", "lsd_lf", "lsd_paper"}``, each ``(B,)`` (0-d for
    1-D input).
    """
    return compute_metrics_many({"pred": pred}, target, ratio)["pred"]


def compute_metrics_many(
    preds: Mapping[str, Tensor], target: Tensor, ratio: float
) -> dict[str, dict[str, Tensor]]:
    """`compute_metrics` of several predictions of one target, computing the target's STFT once.

    Evaluation scores the model and the cubic baseline against the same reference; sharing the
    reference's spectrogram and log powers (instead of 6 STFTs per signal pair in the separate
    metric classes) is what makes evaluation cost little next to the model. Same numbers as
    `compute_metrics` on each pair. Returns `{name: {key: (B,) for key in METRIC_KEYS}}`.
    """
    start = hf_start_bin(ratio)
    out: dict[str, dict[str, Tensor]] = {}
    target_parts: tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor] | None = None
    for name, pred in preds.items():
        pred_c, target_c, squeeze = _prepare(pred, target)
        if target_parts is None:
            power_t = _power_spectrogram(target_c)
            signal = target_c.square().sum(dim=-1)
            centred = _centred(target_c)
            target_parts = (
                target_c,
                signal,
                centred,
                centred.square().sum(dim=-1),
                _log10_power(power_t),
                _ln_power(power_t),
            )
        target_c, signal, target_centred, centred_energy, log_t, ln_t = target_parts
        power_p = _power_spectrogram(pred_c)
        log_p = _log10_power(power_p)
        noise = (target_c - pred_c).square().sum(dim=-1)
        values = {
            "snr": 10.0 * torch.log10((signal + SNR_EPS) / (noise + SNR_EPS)),
            "si_sdr": _si_sdr_from_centred(_centred(pred_c), target_centred, centred_energy),
            "lsd": _lsd_from_log(log_t, log_p),
            "lsd_hf": _lsd_from_log(log_t, log_p, start),
            "lsd_lf": _lsd_from_log(log_t, log_p, 0, start),
            "lsd_paper": _lsd_paper_from_log(ln_t, _ln_power(power_p)),
        }
        out[name] = {key: _finish(value, squeeze) for key, value in values.items()}
    return out


# --------------------------------------------------------------------------------------------
# torchmetrics classes


class _UtteranceMean(Metric):
    """Mean over utterances of a per-utterance metric; sum + count states reduce under DDP.

    States are float64 so long evaluations do not lose precision (not usable on MPS).
    """

    is_differentiable = False
    full_state_update = False
    total: Tensor
    count: Tensor

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        total = torch.tensor(0.0, dtype=torch.float64)
        self.add_state("total", default=total, dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    @abstractmethod
    def _per_utterance(self, preds: Tensor, target: Tensor) -> Tensor:
        """One value per utterance (row) of the batch; each subclass names its metric here."""

    def update(self, preds: Tensor, target: Tensor | None = None) -> None:
        """Add a batch: ``(B, T)`` with one utterance per row, or one utterance ``(T,)``.

        With ``target=None``, ``preds`` holds this metric's per-utterance values, already
        computed (``compute_metrics``), so one STFT per signal serves all the metrics.
        """
        if target is None:
            values = preds.detach().reshape(-1)
        else:
            values = self._per_utterance(preds, target).detach().reshape(-1)
        self.total += values.sum().to(self.total.dtype)
        self.count += values.numel()

    def compute(self) -> Tensor:
        """Mean over all utterances seen since the last reset (NaN if none)."""
        return self.total / self.count


class SNR(_UtteranceMean):
    """Mean per-utterance SNR in dB (see :func:`snr`)."""

    higher_is_better = True

    def _per_utterance(self, preds: Tensor, target: Tensor) -> Tensor:
        return snr(preds, target)


class SISDR(_UtteranceMean):
    """Mean per-utterance SI-SDR in dB (see :func:`si_sdr`)."""

    higher_is_better = True

    def _per_utterance(self, preds: Tensor, target: Tensor) -> Tensor:
        return si_sdr(preds, target)


class LSD(_UtteranceMean):
    """Mean per-utterance standard-form LSD (see :func:`lsd`)."""

    higher_is_better = False

    def _per_utterance(self, preds: Tensor, target: Tensor) -> Tensor:
        return lsd(preds, target)


class _BandLSD(_UtteranceMean):
    """An LSD over part of the band, split at the low-res Nyquist of `ratio`."""

    higher_is_better = False

    def __init__(self, ratio: float, **kwargs: Any) -> None:
        hf_start_bin(ratio)  # fail at construction, not at the first update
        super().__init__(**kwargs)
        self.ratio = ratio


class LSDHF(_BandLSD):
    """Mean per-utterance LSD over the bins above the low-res Nyquist (see :func:`lsd_hf`)."""

    def _per_utterance(self, preds: Tensor, target: Tensor) -> Tensor:
        return lsd_hf(preds, target, self.ratio)


class LSDLF(_BandLSD):
    """Mean per-utterance LSD over the bins below the low-res Nyquist (see :func:`lsd_lf`)."""

    def _per_utterance(self, preds: Tensor, target: Tensor) -> Tensor:
        return lsd_lf(preds, target, self.ratio)


class LSDPaper(_UtteranceMean):
    """Mean per-utterance 2017-code LSD (see :func:`lsd_paper`); only for the 2017 table."""

    higher_is_better = False

    def _per_utterance(self, preds: Tensor, target: Tensor) -> Tensor:
        return lsd_paper(preds, target)


class SuperResMetrics(MetricCollection):
    """The metrics of `METRIC_KEYS` under those keys (``snr``, ``si_sdr``, ``lsd``, ...).

    ``compute_groups`` is off on purpose: torchmetrics would otherwise merge metrics whose states
    happen to be equal after the first batch (e.g. LSD and LSD-HF are both 0 when the first
    prediction is perfect) and from then on update only one of them.
    """

    def __init__(self, ratio: float, prefix: str | None = None, postfix: str | None = None) -> None:
        metrics = {
            "snr": SNR(),
            "si_sdr": SISDR(),
            "lsd": LSD(),
            "lsd_hf": LSDHF(ratio),
            "lsd_lf": LSDLF(ratio),
            "lsd_paper": LSDPaper(),
        }
        assert tuple(metrics) == METRIC_KEYS
        super().__init__(
            metrics,
            prefix=prefix,
            postfix=postfix,
            compute_groups=False,
        )

    def update_values(self, values: Mapping[str, Tensor]) -> None:
        """Add per-utterance values computed once by `compute_metrics` (keys `METRIC_KEYS`)."""
        for name, metric in self.items(keep_base=True, copy_state=False):
            metric.update(values[name])


# --------------------------------------------------------------------------------------------
# perceptual metrics: wideband PESQ and STOI (reference implementations, CPU, per file)


@dataclass
class PerceptualScores:
    """PESQ and STOI of one prediction: values (NaN where undefined) and why they are NaN."""

    values: dict[str, float]
    problems: dict[str, str] = field(default_factory=dict)


def _as_numpy_1d(x: Tensor | np.ndarray, name: str) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().double().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"{name}: expected one signal of shape (T,), got shape {x.shape}")
    return x


def _at_perceptual_rate(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """The signal at 16 kHz: the project's one resampler (polyphase), float64."""
    from audio_superres.dsp.resample import resample_audio

    if int(sample_rate) == PERCEPTUAL_RATE:
        return x
    return resample_audio(x, int(sample_rate), PERCEPTUAL_RATE).astype(np.float64)


def _undefined_input(pred: np.ndarray, target: np.ndarray) -> str | None:
    """Why no perceptual metric is defined for this pair, or None."""
    if not np.any(target):
        return "silent reference"
    if not np.isfinite(pred).all():
        return "non-finite prediction"
    return None


def _pesq_one(pred: np.ndarray, target: np.ndarray) -> tuple[float, str | None]:
    """Wideband PESQ of 16 kHz signals via torchmetrics (``pesq`` package); NaN + reason when
    the ITU algorithm finds no speech ("No utterances detected") or the signal is too short."""
    import pesq as pesq_backend
    from torchmetrics.functional.audio import perceptual_evaluation_speech_quality

    problem = _undefined_input(pred, target)
    if problem is not None:
        return math.nan, problem
    try:
        value = perceptual_evaluation_speech_quality(
            torch.from_numpy(pred), torch.from_numpy(target), PERCEPTUAL_RATE, "wb"
        )
    except pesq_backend.PesqError as err:
        message = err.args[0] if err.args else type(err).__name__
        if isinstance(message, bytes):
            message = message.decode(errors="replace")
        return math.nan, f"{type(err).__name__}: {message}"
    return float(value), None


def _stoi_one(pred: np.ndarray, target: np.ndarray) -> tuple[float, str | None]:
    """STOI (Taal et al. 2011) of 16 kHz signals via torchmetrics (``pystoi``); NaN + reason
    for a silent reference or fewer than 30 frames of speech (where pystoi returns 1e-5)."""
    from torchmetrics.functional.audio import short_time_objective_intelligibility

    problem = _undefined_input(pred, target)
    if problem is not None:
        return math.nan, problem
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = short_time_objective_intelligibility(
            torch.from_numpy(pred), torch.from_numpy(target), PERCEPTUAL_RATE
        )
    for w in caught:
        if "Not enough STFT frames" in str(w.message):
            return math.nan, "fewer than 30 STOI frames of speech (too short or silent)"
    return float(value), None


def perceptual_metrics_many(
    preds: Mapping[str, Tensor | np.ndarray],
    target: Tensor | np.ndarray,
    sample_rate: int,
) -> dict[str, PerceptualScores]:
    """Wideband PESQ and STOI of several predictions of one target (one utterance each, 1-D).

    Signals at another rate than 16 kHz are resampled to it first (`dsp.resample`; the target
    once). Where a metric is undefined for a file (silence, too short) its value is NaN and
    `problems` says why: the caller names the file in a warning; nothing raises. Pure CPU, no
    state: safe to run in worker processes.
    """
    target_np = _as_numpy_1d(target, "target")
    target_16k = _at_perceptual_rate(target_np, sample_rate)
    out = {}
    for name, pred in preds.items():
        pred_np = _as_numpy_1d(pred, name)
        if pred_np.shape != target_np.shape:
            raise ValueError(
                f"{name}: prediction and target differ in length "
                f"({pred_np.shape[0]} vs {target_np.shape[0]})"
            )
        pred_16k = _at_perceptual_rate(pred_np, sample_rate)
        scores = PerceptualScores(values={})
        for key, fn in (("pesq", _pesq_one), ("stoi", _stoi_one)):
            value, problem = fn(pred_16k, target_16k)
            scores.values[key] = value
            if problem is not None:
                scores.problems[key] = problem
        out[name] = scores
    return out


def _perceptual_batch(pred: Tensor, target: Tensor, sample_rate: int, key: str) -> Tensor:
    """One perceptual metric per row, NaN (with a warning naming the row) where undefined."""
    pred, target, squeeze = _prepare(pred, target)
    values = []
    for i in range(pred.shape[0]):
        scores = perceptual_metrics_many({"pred": pred[i]}, target[i], sample_rate)["pred"]
        if key in scores.problems:
            warnings.warn(
                f"{key} undefined for utterance {i}: {scores.problems[key]}; recorded as NaN",
                RuntimeWarning,
                stacklevel=3,
            )
        values.append(scores.values[key])
    return _finish(torch.tensor(values, dtype=torch.float64), squeeze)


def pesq_wb(pred: Tensor, target: Tensor, sample_rate: int) -> Tensor:
    """Per-utterance wideband PESQ (ITU-T P.862.2, MOS-LQO -0.5..4.64) at 16 kHz, on the CPU.

    Signals at other rates are resampled to 16 kHz first. NaN, with a warning, where PESQ is
    undefined (no speech detected, shorter than 1/4 s). Returns ``(B,)`` float64, 0-d for 1-D.
    """
    return _perceptual_batch(pred, target, sample_rate, "pesq")


def stoi(pred: Tensor, target: Tensor, sample_rate: int) -> Tensor:
    """Per-utterance STOI (Taal et al. 2011, 0..1) at 16 kHz, on the CPU.

    Signals at other rates are resampled to 16 kHz first. NaN, with a warning, where STOI is
    undefined (silent reference, under 30 frames of speech). Returns ``(B,)``, 0-d for 1-D.
    """
    return _perceptual_batch(pred, target, sample_rate, "stoi")
