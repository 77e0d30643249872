"""Log-amplitude and phase STFT pairs (AP-BWE's representation), and the anti-wrapping function.

`A = log(|X| + eps)` and `phase = angle(X)`, with a Hann window of `win_length` samples centred in
`n_fft`, frames centred on multiples of `hop_length`, ends zero-padded (`center=True`,
`pad_mode="constant"`: defined for any length, and the same near an end whatever the signal's
length). `InverseAmplitudePhaseSTFT` undoes it exactly: spectrum `(exp(A) - eps) e^{i phase}`.
Used by the AP-BWE generator (`models.apbwe`) and its training loss (`losses.APBWELoss`).

The STFT's, the log-amplitude/phase's and the synthesis' backward passes are written in closed
form (`hann_stft`, `log_amplitude_phase`, `polar_spectrum`): autograd through their pieces made
dozens of float32 passes over the spectra per training step (docs/performance.md, "The lean
AP-BWE step"). They are differentiable once (no double backward).
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager, nullcontext

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

__all__ = [
    "LOG_AMPLITUDE_EPS",
    "AmplitudePhaseSTFT",
    "InverseAmplitudePhaseSTFT",
    "anti_wrap",
    "check_stft_sizes",
    "float32_region",
    "hann_stft",
    "log_amplitude_phase",
    "polar_parts",
    "polar_spectrum",
    "wrap_phase",
]

LOG_AMPLITUDE_EPS = 1e-4  # A = log(|X| + eps), as AP-BWE


def float32_region(device: torch.device) -> AbstractContextManager:
    """Autocast off on `device`: STFTs, logs and phases stay in float32 under mixed precision."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device.type, enabled=False)
    return nullcontext()


def check_stft_sizes(n_fft: int, hop_length: int, win_length: int) -> None:
    """Raise ValueError unless 0 < hop < win <= n_fft (the Hann windows must overlap)."""
    if not 0 < hop_length < win_length <= n_fft:
        raise ValueError(
            f"need 0 < hop_length < win_length <= n_fft, got hop_length={hop_length}, "
            f"win_length={win_length}, n_fft={n_fft}"
        )


class _LogAmplitudePhase(torch.autograd.Function):
    """Complex `X` -> `(log(|X| + eps), angle(X))`, with the backward in closed form.

    Autograd through `abs`, `log` and `angle` makes about a dozen passes over the spectrum (the
    angle's backward alone divides by `|X|^2` under a `where`); the closed form is one complex
    product: `grad_X = (g_A / (|X| + eps) + i g_P / |X|) X / |X|`, and 0 where `X = 0` (as
    autograd's `abs` and `angle` give). Same gradient, to float rounding (tests/test_losses_apbwe).
    """

    @staticmethod
    def forward(ctx, spec: Tensor, eps: float) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        magnitude = spec.abs()
        ctx.save_for_backward(spec, magnitude)
        ctx.eps = eps
        return torch.log(magnitude + eps), torch.angle(spec)

    @staticmethod
    @once_differentiable
    def backward(ctx, g_amp: Tensor | None, g_pha: Tensor | None):  # type: ignore[override]
        spec, magnitude = ctx.saved_tensors
        inv = torch.where(magnitude > 0, magnitude.reciprocal(), 0.0)
        real = g_amp * inv / (magnitude + ctx.eps) if g_amp is not None else torch.zeros_like(inv)
        imag = g_pha * inv.square() if g_pha is not None else torch.zeros_like(inv)
        return torch.complex(real, imag) * spec, None


def log_amplitude_phase(spec: Tensor, eps: float = LOG_AMPLITUDE_EPS) -> tuple[Tensor, Tensor]:
    """`(log(|X| + eps), angle(X))` of a complex spectrum, differentiable with a closed-form
    backward (the AP-BWE representation; `AmplitudePhaseSTFT` and `losses.APBWELoss`)."""
    return _LogAmplitudePhase.apply(spec, eps)


class _PolarSpectrum(torch.autograd.Function):
    """`(A, P)` -> the complex spectrum `(exp(A) - eps) e^{iP}`, with the backward in closed
    form: `g_A = exp(A) Re(conj(g) e^{iP})`, `g_P = Re(conj(g) i X)`, a few real passes where
    autograd runs the backward of exp, cos, sin, two products and `torch.complex`."""

    @staticmethod
    def forward(ctx, log_amplitude: Tensor, phase: Tensor, eps: float) -> Tensor:  # type: ignore[override]
        amplitude = torch.exp(log_amplitude)
        cos, sin = torch.cos(phase), torch.sin(phase)
        real, imag = (amplitude - eps) * cos, (amplitude - eps) * sin
        ctx.save_for_backward(amplitude, cos, sin, real, imag)
        return torch.complex(real, imag)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        amplitude, cos, sin, real, imag = ctx.saved_tensors
        g_re, g_im = grad.real.contiguous(), grad.imag.contiguous()  # also for a lazy conj
        g_amp = (g_re * cos).add_(g_im * sin).mul_(amplitude)
        g_pha = (g_im * real).sub_(g_re * imag)
        return g_amp, g_pha, None


def polar_parts(log_amplitude: Tensor, phase: Tensor) -> tuple[Tensor, Tensor]:
    """`e^{A + iP}` as real and imaginary parts `(e^A cos P, e^A sin P)`: real tensors, several
    times faster on a CPU than `torch.polar` and complex arithmetic (AP-BWE's complex terms)."""
    amplitude = torch.exp(log_amplitude)
    return amplitude * torch.cos(phase), amplitude * torch.sin(phase)


def polar_spectrum(log_amplitude: Tensor, phase: Tensor, eps: float = LOG_AMPLITUDE_EPS) -> Tensor:
    """`(exp(A) - eps) e^{iP}`, the inverse of `log_amplitude_phase`; closed-form backward."""
    return _PolarSpectrum.apply(log_amplitude, phase, eps)


class _HannSTFT(torch.autograd.Function):
    """`torch.stft` (centred, zero-padded ends) of real `(B, n)` signals with a leaner backward.

    Autograd's backward of a one-sided real FFT runs a full-length complex FFT; the adjoint of
    `rfft` is `n_fft * irfft` of the gradient with its bins between DC and Nyquist halved, a
    real FFT of half the work. Then only the window's `win_length` samples of each frame are
    overlap-added (`fold`), not all `n_fft`. Same gradient, to float rounding (gradcheck in
    tests/test_losses_apbwe.py).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, wave: Tensor, n_fft: int, hop_length: int, win_length: int, window: Tensor
    ) -> Tensor:
        ctx.sizes = (n_fft, hop_length, win_length, wave.shape[-1])
        ctx.save_for_backward(window)
        return torch.stft(
            wave, n_fft, hop_length, win_length, window=window, center=True,
            pad_mode="constant", return_complex=True,
        )

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (window,) = ctx.saved_tensors
        n_fft, hop, win, length = ctx.sizes
        half = grad.clone()
        half[:, 1 : (n_fft + 1) // 2].mul_(0.5)  # bins counted twice in the two-sided sum
        frames = torch.fft.irfft(half, n=n_fft, dim=1)  # (B, n_fft, T)
        left = (n_fft - win) // 2  # torch.stft centres the window in the frame
        frames = frames[:, left : left + win].mul_(window[:, None] * n_fft)
        count = frames.shape[-1]
        summed = F.fold(frames, (1, (count - 1) * hop + win), (1, win), stride=(1, hop))
        summed = summed.reshape(frames.shape[0], -1)
        offset = left - n_fft // 2  # signal index of the first folded sample
        out = summed.new_zeros(frames.shape[0], length)
        first, last = max(0, offset), min(length, offset + summed.shape[-1])
        if last > first:
            out[:, first:last] = summed[:, first - offset : last - offset]
        return out, None, None, None, None


def hann_stft(wave: Tensor, n_fft: int, hop_length: int, win_length: int, window: Tensor) -> Tensor:
    """`torch.stft(wave, ..., center=True, pad_mode="constant", return_complex=True)` of `(B, n)`
    signals with a fixed window (AP-BWE's Hann window; any window works), differentiable in the
    signal with a leaner backward (`_HannSTFT`)."""
    if wave.ndim != 2 or not wave.requires_grad or window.requires_grad:  # (a learnt window:
        return torch.stft(  # autograd's backward, which also differentiates the window)
            wave, n_fft, hop_length, win_length, window=window, center=True,
            pad_mode="constant", return_complex=True,
        )
    return _HannSTFT.apply(wave, n_fft, hop_length, win_length, window)


class _HannFrames(nn.Module):
    """STFT settings shared by the analysis and the synthesis: sizes, eps, the Hann window (a
    buffer, rebuilt rather than stored in checkpoints)."""

    def __init__(
        self, n_fft: int, hop_length: int, win_length: int, eps: float = LOG_AMPLITUDE_EPS
    ) -> None:
        super().__init__()
        check_stft_sizes(n_fft, hop_length, win_length)
        self.n_fft, self.hop_length, self.win_length, self.eps = n_fft, hop_length, win_length, eps
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)

    def extra_repr(self) -> str:
        return f"n_fft={self.n_fft}, hop_length={self.hop_length}, win_length={self.win_length}"


class AmplitudePhaseSTFT(_HannFrames):
    """Waveform `(B, n)` -> log-amplitude `log(|X| + eps)` and phase, each `(B, n_fft//2+1, T)`.

    `T = 1 + (n + 2 (n_fft // 2) - n_fft) // hop_length` frames (`n // hop_length + 1` for an
    even `n_fft`) centred on multiples of `hop_length` (zero-padded ends).
    """

    def forward(self, wave: Tensor) -> tuple[Tensor, Tensor]:
        with float32_region(wave.device):
            spec = hann_stft(
                wave.float(), self.n_fft, self.hop_length, self.win_length, self.window.float()
            )
            return log_amplitude_phase(spec, self.eps)


class InverseAmplitudePhaseSTFT(_HannFrames):
    """Log-amplitude and phase `(B, n_fft//2+1, T)` -> waveform `(B, length)`.

    The inverse of `AmplitudePhaseSTFT`: spectrum `(exp(A) - eps) e^{i phase}`, overlap-add with
    the same window, cut (or zero-extended) to `length`.
    """

    def forward(self, log_amplitude: Tensor, phase: Tensor, length: int) -> Tensor:
        with float32_region(log_amplitude.device):
            spec = polar_spectrum(log_amplitude.float(), phase.float(), self.eps)
            return torch.istft(
                spec,
                self.n_fft,
                self.hop_length,
                self.win_length,
                window=self.window.float(),
                center=True,
                length=length,
            )


def wrap_phase(x: Tensor) -> Tensor:
    """`x - 2 pi round(x / 2 pi)`: a phase difference brought into [-pi, pi]."""
    return x - 2 * math.pi * torch.round(x / (2 * math.pi))


def anti_wrap(x: Tensor) -> Tensor:
    """`|x - 2 pi round(x / 2 pi)|`: the distance of a phase difference to the nearest multiple of
    2 pi, in [0, pi] (AP-BWE's anti-wrapping function; phase errors of 2 pi k cost nothing)."""
    return wrap_phase(x).abs()
