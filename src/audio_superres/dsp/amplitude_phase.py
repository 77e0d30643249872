"""Log-amplitude and phase STFT pairs (AP-BWE's representation), and the anti-wrapping function.

`A = log(|X| + eps)` and `phase = angle(X)`, with a Hann window of `win_length` samples centred in
`n_fft`, frames centred on multiples of `hop_length`, ends zero-padded (`center=True`,
`pad_mode="constant"`: defined for any length, and the same near an end whatever the signal's
length). `InverseAmplitudePhaseSTFT` undoes it exactly: spectrum `(exp(A) - eps) e^{i phase}`.
Used by the AP-BWE generator (`models.apbwe`) and its training loss (`losses.APBWELoss`).
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager, nullcontext

import torch
from torch import Tensor, nn

__all__ = [
    "LOG_AMPLITUDE_EPS",
    "AmplitudePhaseSTFT",
    "InverseAmplitudePhaseSTFT",
    "anti_wrap",
    "check_stft_sizes",
    "float32_region",
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

    `T = n // hop_length + 1` frames centred on multiples of `hop_length` (zero-padded ends).
    """

    def forward(self, wave: Tensor) -> tuple[Tensor, Tensor]:
        with float32_region(wave.device):
            spec = torch.stft(
                wave.float(),
                self.n_fft,
                self.hop_length,
                self.win_length,
                window=self.window.float(),
                center=True,
                pad_mode="constant",
                return_complex=True,
            )
            return torch.log(spec.abs() + self.eps), torch.angle(spec)


class InverseAmplitudePhaseSTFT(_HannFrames):
    """Log-amplitude and phase `(B, n_fft//2+1, T)` -> waveform `(B, length)`.

    The inverse of `AmplitudePhaseSTFT`: spectrum `(exp(A) - eps) e^{i phase}`, overlap-add with
    the same window, cut (or zero-extended) to `length`.
    """

    def forward(self, log_amplitude: Tensor, phase: Tensor, length: int) -> Tensor:
        with float32_region(log_amplitude.device):
            amplitude = torch.exp(log_amplitude.float()) - self.eps
            phase = phase.float()
            spec = torch.complex(amplitude * torch.cos(phase), amplitude * torch.sin(phase))
            return torch.istft(
                spec,
                self.n_fft,
                self.hop_length,
                self.win_length,
                window=self.window.float(),
                center=True,
                length=length,
            )


def anti_wrap(x: Tensor) -> Tensor:
    """`|x - 2 pi round(x / 2 pi)|`: the distance of a phase difference to the nearest multiple of
    2 pi, in [0, pi] (AP-BWE's anti-wrapping function; phase errors of 2 pi k cost nothing)."""
    return (x - 2 * math.pi * torch.round(x / (2 * math.pi))).abs()
