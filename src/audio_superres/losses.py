"""Training losses. `RMSELoss` is the 2017 code's loss; `MRSTFTLoss` adds a spectral term."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext

import torch
import torch.nn.functional as F
from auraloss.freq import MultiResolutionSTFTLoss
from torch import Tensor, nn


class RMSELoss(nn.Module):
    """`sqrt(mean((pred - y)^2) + eps)` per patch, averaged over the batch (the original's loss)."""

    def __init__(self, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        mse = (pred - target).pow(2).flatten(1).mean(dim=1)
        return torch.sqrt(mse + self.eps).mean()


class L1Loss(nn.Module):
    """Mean absolute error over all samples."""

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return (pred - target).abs().mean()


class MSELoss(nn.Module):
    """Mean squared error over all samples."""

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return (pred - target).pow(2).mean()


def float32_spectra(x: Tensor) -> AbstractContextManager:
    """Autocast off on `x`'s device: bf16 STFTs are neither supported everywhere nor precise
    enough for log magnitudes."""
    device_type = x.device.type
    if torch.amp.is_autocast_available(device_type):
        return torch.autocast(device_type, enabled=False)
    return nullcontext()


def padded_pair(pred: Tensor, target: Tensor, min_len: int) -> tuple[Tensor, Tensor]:
    """float32 `(B, T)` copies, zero-padded alike to at least `min_len` samples (an STFT's
    reflect padding needs more than half the FFT)."""
    pred, target = pred.float().flatten(1), target.float().flatten(1)
    short = min_len - pred.shape[-1]
    if short > 0:
        pred, target = F.pad(pred, (0, short)), F.pad(target, (0, short))
    return pred, target


class MelLoss(nn.Module):
    """L1 distance between log-mel spectrograms (HiFi-GAN's reconstruction term).

    `log(max(mel, 1e-5))` of the magnitude (power 1) mel spectrogram, torchaudio's
    `MelSpectrogram` with Slaney-normalised filters on the Slaney mel scale (what librosa, and so
    HiFi-GAN, uses). Computed in float32 outside autocast, like the STFT term of `MRSTFTLoss`.
    """

    def __init__(
        self,
        sample_rate: int,
        n_fft: int = 1024,
        hop_length: int = 256,
        win_length: int = 1024,
        n_mels: int = 80,
        f_min: float = 0.0,
        f_max: float | None = None,
        floor: float = 1e-5,
    ) -> None:
        super().__init__()
        from torchaudio.transforms import MelSpectrogram

        if not 0 < hop_length <= win_length <= n_fft:
            raise ValueError(
                f"need 0 < hop <= win_length <= n_fft, got {hop_length, win_length, n_fft}"
            )
        self.min_len = n_fft // 2 + 1  # reflect padding needs more samples than half the FFT
        self.floor = float(floor)
        self.mel = MelSpectrogram(
            sample_rate=int(sample_rate),
            n_fft=n_fft,
            win_length=win_length,
            hop_length=hop_length,
            f_min=f_min,
            f_max=f_max,
            n_mels=n_mels,
            power=1.0,
            center=True,
            pad_mode="reflect",
            norm="slaney",
            mel_scale="slaney",
        )

    def log_mel(self, x: Tensor) -> Tensor:
        """`(B, T)` -> `(B, n_mels, frames)` log-mel magnitudes."""
        return torch.log(torch.clamp(self.mel(x), min=self.floor))

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        with float32_spectra(pred):
            pred, target = padded_pair(pred, target, self.min_len)
            return (self.log_mel(pred) - self.log_mel(target)).abs().mean()


WAVEFORM_LOSSES: dict[str, type[nn.Module]] = {"rmse": RMSELoss, "l1": L1Loss, "mse": MSELoss}


class MRSTFTLoss(nn.Module):
    """`waveform_weight * waveform loss + stft_weight * multi-resolution STFT loss`.

    The STFT term is auraloss' `MultiResolutionSTFTLoss` (Yamamoto et al. 2020; Steinmetz &
    Reiss 2020): spectral convergence + L1 log-magnitude distance, averaged over the
    (fft_size, hop_size, win_length) resolutions. It rewards the high-band spectral detail that
    waveform losses, dominated by the loud low band, barely see; the waveform term keeps the
    phase. It is computed in float32 outside autocast (bf16 STFTs are neither supported
    everywhere nor precise enough for log magnitudes). Signals shorter than half the largest FFT
    are zero-padded (pred and target alike) so that short clips still work.
    """

    def __init__(
        self,
        waveform: str = "rmse",
        waveform_weight: float = 1.0,
        stft_weight: float = 1.0,
        fft_sizes: Sequence[int] = (512, 1024, 2048),
        hop_sizes: Sequence[int] = (128, 256, 512),
        win_lengths: Sequence[int] = (512, 1024, 2048),
        window: str = "hann_window",
    ) -> None:
        super().__init__()
        if waveform not in WAVEFORM_LOSSES:
            raise ValueError(
                f"waveform loss must be one of {sorted(WAVEFORM_LOSSES)}, got {waveform!r}"
            )
        fft_sizes, hop_sizes, win_lengths = list(fft_sizes), list(hop_sizes), list(win_lengths)
        if not fft_sizes or not len(fft_sizes) == len(hop_sizes) == len(win_lengths):
            raise ValueError(
                f"fft_sizes {fft_sizes}, hop_sizes {hop_sizes} and win_lengths {win_lengths} "
                "must be non-empty lists of equal length"
            )
        for n_fft, hop, win in zip(fft_sizes, hop_sizes, win_lengths, strict=True):
            if not 0 < hop <= win <= n_fft:
                raise ValueError(f"need 0 < hop <= win_length <= fft_size, got {hop, win, n_fft}")
        self.waveform = waveform
        self.waveform_weight = float(waveform_weight)
        self.stft_weight = float(stft_weight)
        self.min_len = max(fft_sizes) // 2 + 1  # torch.stft's reflect padding needs more
        self.waveform_loss = WAVEFORM_LOSSES[waveform]()
        self.stft_loss = MultiResolutionSTFTLoss(
            fft_sizes=fft_sizes, hop_sizes=hop_sizes, win_lengths=win_lengths, window=window
        )

    def spectral(self, pred: Tensor, target: Tensor) -> Tensor:
        """The multi-resolution STFT term alone, on `(B, T)` signals."""
        with float32_spectra(pred):
            pred, target = padded_pair(pred, target, self.min_len)
            return self.stft_loss(pred.unsqueeze(1), target.unsqueeze(1))

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        loss = pred.new_zeros((), dtype=torch.float32)
        if self.waveform_weight:
            loss = loss + self.waveform_weight * self.waveform_loss(pred, target)
        if self.stft_weight:
            loss = loss + self.stft_weight * self.spectral(pred, target)
        return loss

    def extra_repr(self) -> str:
        return (
            f"waveform={self.waveform!r}, waveform_weight={self.waveform_weight}, "
            f"stft_weight={self.stft_weight}"
        )
