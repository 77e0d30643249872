"""Training losses. `RMSELoss` is the 2017 code's loss; `MRSTFTLoss` adds a spectral term;
`APBWELoss` is AP-BWE's; `WeightedSum` combines any of them from configs."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from auraloss.freq import MultiResolutionSTFTLoss
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from audio_superres.dsp.amplitude_phase import (
    AmplitudePhaseSTFT,
    float32_region,
    polar_parts,
    wrap_phase,
)

Spectrum = tuple[Tensor, Tensor]  # a spectral generator's (log_amplitude, phase)


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


def takes_spectrum(loss: nn.Module) -> bool:
    """Whether `loss(pred, target, pred_spectrum=...)` uses a generator's own spectrum
    (`APBWELoss`, and a `WeightedSum` holding one). Such a loss takes `pred_spectrum` in
    `terms()` too, when it has one."""
    if isinstance(loss, WeightedSum):
        return any(takes_spectrum(term) for _, _, term in loss.active())
    return "pred_spectrum" in inspect.signature(loss.forward).parameters


def spectrum_stfts(loss: nn.Module, name: str) -> dict[str, nn.Module]:
    """The STFTs of the spectrum-taking losses in `loss` (its `stft`), by name (`name` for the
    loss itself, `name/<term>` inside a `WeightedSum`)."""
    if isinstance(loss, WeightedSum):
        return {
            found: stft
            for term_name, _, term in loss.active()
            for found, stft in spectrum_stfts(term, f"{name}/{term_name}").items()
        }
    stft = getattr(loss, "stft", None)
    return {name: stft} if stft is not None and takes_spectrum(loss) else {}


def weighted_term(term: Any, where: str) -> tuple[float, Any]:
    """`(weight, loss)` of one `{weight, loss}` entry of a weighted sum of losses (`WeightedSum`,
    the adversarial objective's `reconstruction`); weight 1 when not given."""
    if not isinstance(term, Mapping) or "loss" not in term:
        raise ValueError(f"{where} must be {{weight: ..., loss: <loss config>}}")
    unknown = set(term) - {"weight", "loss"}
    if unknown:
        raise ValueError(f"{where} has unknown keys {sorted(unknown)}")
    return float(term.get("weight", 1.0)), term["loss"]


def _spectrum_kwargs(loss: nn.Module, spectrum: Spectrum | None) -> dict[str, Spectrum]:
    """`{"pred_spectrum": spectrum}` for a loss that takes it, else `{}`."""
    if spectrum is not None and takes_spectrum(loss):
        return {"pred_spectrum": spectrum}
    return {}


def call_loss(
    loss: nn.Module, pred: Tensor, target: Tensor, spectrum: Spectrum | None = None
) -> Tensor:
    """`loss(pred, target)`, with the generator's `(log_amplitude, phase)` for a loss that
    takes it (`takes_spectrum`); other losses see the waveform only."""
    return loss(pred, target, **_spectrum_kwargs(loss, spectrum))


def loss_components(
    loss: nn.Module, pred: Tensor, target: Tensor, spectrum: Spectrum | None = None
) -> dict[str, Tensor]:
    """The components a loss reports through `terms(...)` (spectrum passed as by `call_loss`),
    detached; `{}` for a loss without components."""
    terms = getattr(loss, "terms", None)
    if terms is None:
        return {}
    with torch.no_grad():
        values = terms(pred, target, **_spectrum_kwargs(loss, spectrum))
    return {k: v.detach() for k, v in values.items()}


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


SPECTRAL_TERMS = ("amplitude", "phase_ip", "phase_gd", "phase_iaf", "complex")


def _diff_adjoint(g: Tensor, dim: int) -> Tensor:
    """The adjoint of `x.diff(dim=dim)`: maps a gradient on the differences to one on `x`
    (`out[0] = -g[0]`, `out[j] = g[j-1] - g[j]`, `out[-1] = g[-1]`)."""
    after = [0, 0] * (g.ndim - 1 - dim % g.ndim)
    return F.pad(g, [*after, 1, 0]) - F.pad(g, [*after, 0, 1])


class _SpectralTerms(torch.autograd.Function):
    """AP-BWE's amplitude, phase (ip, gd, iaf) and complex terms of a predicted log-amplitude
    and phase against the target's, as one vector `SPECTRAL_TERMS`, with a hand-written backward.

    Written as autograd would run it, these terms make some fifty float32 passes over the
    `(B, n_fft//2+1, frames)` spectra per step (wrap, diff, exp, cos, sin, stack, and each op's
    backward): the largest cost of an AP-BWE training step on a CPU (docs/performance.md). Here
    the forward keeps what the backward needs (the amplitude error, the signs of the wrapped phase
    differences, `Z = e^{A + iP}` and `E = Z - Z_T` as real and imaginary parts: `torch.polar`
    and complex `abs` are several times slower than the real passes on a CPU), and the backward is
    `g_A = 2 w_amp (A - A_T) / n + w_c Re(conj(E) Z) / n` and
    `g_P = -w_ip s_ip / n - w_gd D_f^T s_gd / n_gd - w_iaf D_t^T s_iaf / n_iaf`
    `- w_c Im(conj(E) Z) / n`
    (`s` the signs, `D^T` the adjoint of a difference). The same values and gradients as autograd
    through the definitions, to float rounding (tests/test_losses_apbwe.py).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, amp: Tensor, pha: Tensor, amp_t: Tensor, pha_t: Tensor, com_t: tuple[Tensor, Tensor]
    ) -> Tensor:
        values, saved = spectral_terms_forward(amp, pha, amp_t, pha_t, *com_t)
        ctx.save_for_backward(*saved)
        return values

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return (*spectral_terms_backward(grad, *ctx.saved_tensors), None, None, None)


def _mean_or_zero(x: Tensor) -> Tensor:
    return x.mean() if x.numel() else x.new_zeros(())


def spectral_terms_forward(
    amp: Tensor, pha: Tensor, amp_t: Tensor, pha_t: Tensor, com_t_re: Tensor, com_t_im: Tensor
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """`_SpectralTerms`' forward as plain tensor code (no autograd): the terms and what the
    backward needs."""
    amp_err = amp - amp_t
    delta = pha_t - pha  # the phase differences' differences are this one's differences
    # a difference over one frame (or one bin) is empty: no differences, no loss, no gradient
    wrapped = (wrap_phase(delta), wrap_phase(delta.diff(dim=1)), wrap_phase(delta.diff(dim=2)))
    com_re, com_im = polar_parts(amp, pha)
    err_re, err_im = com_re - com_t_re, com_im - com_t_im
    values = torch.stack(
        [
            amp_err.square().mean(),
            *(_mean_or_zero(w.abs()) for w in wrapped),
            (err_re.square().sum() + err_im.square().sum()) / (2 * err_re.numel()),
        ]
    )
    return values, (amp_err, com_re, com_im, err_re, err_im, *(w.sign() for w in wrapped))


def spectral_terms_backward(
    grad: Tensor,
    amp_err: Tensor,
    com_re: Tensor,
    com_im: Tensor,
    err_re: Tensor,
    err_im: Tensor,
    sign_ip: Tensor,
    sign_gd: Tensor,
    sign_iaf: Tensor,
) -> tuple[Tensor, Tensor]:
    """`_SpectralTerms`' backward as plain tensor code: `(g_A, g_P)` for the terms' gradient
    `grad` (one weight per term)."""
    n = amp_err.numel()
    # conj(E) Z = (err_re com_re + err_im com_im) + i (err_re com_im - err_im com_re)
    g_amp = (err_re * com_re + err_im * com_im) * (grad[4] / n) + amp_err * (2.0 * grad[0] / n)
    g_pha = (err_im * com_re - err_re * com_im) * (grad[4] / n)
    g_pha = g_pha - sign_ip * (grad[1] / n)
    for k, (dim, sign) in enumerate(((1, sign_gd), (2, sign_iaf)), start=2):
        if sign.numel():
            g_pha = g_pha - _diff_adjoint(sign, dim) * (grad[k] / sign.numel())
    return g_amp, g_pha


def apbwe_spectral_terms(amp: Tensor, pha: Tensor, amp_t: Tensor, pha_t: Tensor) -> Tensor:
    """AP-BWE's spectral terms (`SPECTRAL_TERMS`, one vector) of a log-amplitude and phase
    `(B, F, T)` against the target's: amplitude MSE, anti-wrapped phase ip / gd / iaf means,
    complex MSE over real and imaginary parts. Differentiable in `amp` and `pha` (hand-written
    backward); the target's are data."""
    with torch.no_grad():
        com_t = polar_parts(amp_t, pha_t)
    return _SpectralTerms.apply(amp, pha, amp_t.detach(), pha_t.detach(), com_t)


class APBWELoss(nn.Module):
    """AP-BWE's training loss (Lu et al. 2024) without the GAN terms, for any model's waveform.

    On STFTs with the generator's settings (n_fft 1024, hop 80, window 320; log-amplitude
    `A = log(|X| + 1e-4)`, phase `P`; `dsp.amplitude_phase`), with `T` the target's, `G` the
    prediction's:

    - amplitude: `mean((A_T - A_G)^2)`
    - phase (anti-wrapped, `aw(x) = |x - 2 pi round(x / 2 pi)|`): instantaneous phase
      `mean(aw(P_T - P_G))`, group delay `mean(aw(diff_f P_T - diff_f P_G))` (along frequency),
      instantaneous angular frequency `mean(aw(diff_t P_T - diff_t P_G))` (along time)
    - complex: `mean(|e^{A_T + iP_T} - e^{A_G + iP_G}|^2)` over real and imaginary parts
    - consistency: `mean(|S_G - STFT(iSTFT(S_G))|^2)`, S_G the generator's own spectrum
    - waveform (not in the paper; weight 0 by default): `waveform` loss on the samples.

    The total is `amplitude_weight * amplitude + phase_weight * (ip + gd + iaf) + complex_weight *
    complex + consistency_weight * consistency + waveform_weight * waveform`, the paper's weights
    45, 100, 90, 90 by default.

    `forward(pred, target)` computes every term from the STFT of the predicted waveform, so it
    works for any model. That spectrum is consistent by construction (it is the STFT of a signal),
    so the consistency term is 0 there: the paper applies its amplitude/phase/complex losses to the
    generator's raw, possibly inconsistent, spectrum and needs the consistency loss to tie that
    spectrum to the waveform it produces; losses on the re-analysed waveform optimise the output
    directly. Pass the generator's `(log_amplitude, phase)` as `pred_spectrum`
    (`APBWE.predict_spectrum`) to get the paper's arrangement: the spectral terms on that
    spectrum and the consistency term against the waveform's STFT.

    Computed in float32 outside autocast; signal ends are zero-padded (the paper reflects; only the
    first and last frames differ), which defines it for any length.
    """

    def __init__(
        self,
        n_fft: int = 1024,
        hop_length: int = 80,
        win_length: int = 320,
        amplitude_weight: float = 45.0,
        phase_weight: float = 100.0,
        complex_weight: float = 90.0,
        consistency_weight: float = 90.0,
        waveform_weight: float = 0.0,
        waveform: str = "l1",
    ) -> None:
        super().__init__()
        if waveform not in WAVEFORM_LOSSES:
            raise ValueError(
                f"waveform loss must be one of {sorted(WAVEFORM_LOSSES)}, got {waveform!r}"
            )
        self.stft = AmplitudePhaseSTFT(n_fft, hop_length, win_length)
        self.weights = {
            "amplitude": float(amplitude_weight),
            "phase_ip": float(phase_weight),
            "phase_gd": float(phase_weight),
            "phase_iaf": float(phase_weight),
            "complex": float(complex_weight),
            "consistency": float(consistency_weight),
            "waveform": float(waveform_weight),
        }
        self.waveform = waveform
        self.waveform_loss = WAVEFORM_LOSSES[waveform]()

    @staticmethod
    def _complex(log_amplitude: Tensor, phase: Tensor) -> Tensor:
        """`e^{A + iP}` as real and imaginary parts (last dim)."""
        return torch.stack(polar_parts(log_amplitude, phase), dim=-1)

    def terms(
        self, pred: Tensor, target: Tensor, pred_spectrum: Spectrum | None = None
    ) -> dict[str, Tensor]:
        """The unweighted components, by name (see the class docstring), as float32 scalars.
        Gradients reach `pred` and `pred_spectrum`; the target is data (none reach it)."""
        if pred.shape != target.shape:
            raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
        with float32_region(pred.device):
            pred, target = pred.float().flatten(1), target.float().flatten(1)
            with torch.no_grad():
                amp_t, pha_t = self.stft(target)
            amp_w, pha_w = self.stft(pred)
            if pred_spectrum is None:
                amp_g, pha_g = amp_w, pha_w
                consistency = pred.new_zeros(())
            else:
                amp_g, pha_g = (s.float() for s in pred_spectrum)
                if amp_g.shape != amp_t.shape or pha_g.shape != amp_t.shape:
                    raise ValueError(
                        f"pred_spectrum shapes {tuple(amp_g.shape)}, {tuple(pha_g.shape)} do not "
                        f"match the STFT of the waveform {tuple(amp_t.shape)}"
                    )
                consistency = F.mse_loss(self._complex(amp_g, pha_g), self._complex(amp_w, pha_w))
            spectral = apbwe_spectral_terms(amp_g, pha_g, amp_t, pha_t)
            return {
                **dict(zip(SPECTRAL_TERMS, spectral.unbind(), strict=True)),
                "consistency": consistency,
                "waveform": self.waveform_loss(pred, target),
            }

    def forward(
        self, pred: Tensor, target: Tensor, pred_spectrum: Spectrum | None = None
    ) -> Tensor:
        terms = self.terms(pred, target, pred_spectrum)
        return sum(
            (self.weights[name] * value for name, value in terms.items() if self.weights[name]),
            start=pred.new_zeros((), dtype=torch.float32),
        )

    def extra_repr(self) -> str:
        weights = ", ".join(f"{k}={v:g}" for k, v in self.weights.items())
        return f"{self.stft.extra_repr()}, waveform={self.waveform!r}, {weights}"


class WeightedSum(nn.Module):
    """`sum_i weight_i * loss_i(pred, target)`: reconstruction losses combined in a config.

    `terms`: name -> `{weight, loss}`, `loss` any loss config (built before it gets here), e.g.
    AP-BWE's terms plus a multi-resolution STFT term (`conf/loss/apbwe_mrstft.yaml`). A weight of
    0 switches a term off (it is then not computed). `terms()` reports each weighted term's
    unweighted value by name, and the components of losses that report their own as
    `<name>/<component>`, so W&B logs every term. A generator's own spectrum (`pred_spectrum`)
    reaches the terms that take it.
    """

    def __init__(self, terms: Mapping[str, Mapping[str, Any]]) -> None:
        super().__init__()
        if not terms:
            raise ValueError("WeightedSum needs at least one term: {name: {weight, loss}}")
        self.weights: dict[str, float] = {}
        losses = {}
        for name, term in terms.items():
            weight, loss = weighted_term(term, f"loss term {name!r}")
            if not isinstance(loss, nn.Module):
                raise ValueError(f"loss term {name!r}: its loss must be a loss config")
            self.weights[name], losses[name] = weight, loss
        self.losses = nn.ModuleDict(losses)
        if not self.active():
            raise ValueError(f"every loss term has weight 0: {self.weights}")

    def active(self) -> list[tuple[str, float, nn.Module]]:
        """The terms with a non-zero weight: `(name, weight, loss)`."""
        return [(n, self.weights[n], loss) for n, loss in self.losses.items() if self.weights[n]]

    def forward(
        self, pred: Tensor, target: Tensor, pred_spectrum: Spectrum | None = None
    ) -> Tensor:
        """The weighted sum; `pred_spectrum` reaches the terms that take it (`call_loss`)."""
        values = (w * call_loss(loss, pred, target, pred_spectrum) for _, w, loss in self.active())
        return sum(values, start=pred.new_zeros((), dtype=torch.float32))

    def terms(
        self, pred: Tensor, target: Tensor, pred_spectrum: Spectrum | None = None
    ) -> dict[str, Tensor]:
        """Each active term's unweighted value, and its own components as `<name>/<component>`."""
        out = {}
        for name, _, loss in self.active():
            out[name] = call_loss(loss, pred, target, pred_spectrum)
            parts = loss_components(loss, pred, target, pred_spectrum)
            out.update({f"{name}/{k}": v for k, v in parts.items()})
        return out

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v:g}" for k, v in self.weights.items())
