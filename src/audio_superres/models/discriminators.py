"""Discriminators for adversarial training (`objective=adversarial`), apart from the generators.

Every discriminator maps a batch of HR waveforms `(B, T)` to a list of `(score, features)`, one
per sub-discriminator: `score` the per-patch logits flattened to `(B, N)`, `features` the
activations of each hidden layer (for the feature-matching loss). Written from the papers:
HiFi-GAN's multi-period discriminator (Kong et al. 2020) and a multi-resolution spectrogram
discriminator in amplitude or phase (UnivNet, Jang et al. 2021; AP-BWE, Lu et al. 2024).

AP-BWE's own discriminators differ from HiFi-GAN's and UnivNet's in details that each have an
option here (defaults: the HiFi-GAN/UnivNet forms): its period discriminators leave the first
layer's activation out of the feature-matching features (`skip_features=1`); its amplitude and
phase discriminators (MRAD, MRPD) look at the linear amplitude (`amplitude: linear`) and the phase
of a rectangular-window STFT (`window: rectangular`) through a conv stack strided in time and
frequency (`stack: apbwe`: Vocos's resolution discriminator, 5 convs + output).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

DiscriminatorOutput = list[tuple[Tensor, list[Tensor]]]
LEAK = 0.1


def conv_stack(
    layers: nn.ModuleList, out: nn.Module, h: Tensor, skip_features: int = 0
) -> tuple[Tensor, list[Tensor]]:
    """Hidden convs with LeakyReLU, then the output conv: `(score (B, N), activations)`, every
    activation but those of the first `skip_features` hidden layers."""
    features = []
    for i, layer in enumerate(layers):
        h = F.leaky_relu(layer(h), LEAK)
        if i >= skip_features:
            features.append(h)
    h = out(h)
    features.append(h)
    return h.flatten(1), features


def check_skip_features(skip_features: int, n_layers: int) -> int:
    if not 0 <= int(skip_features) <= n_layers:
        raise ValueError(f"skip_features must be in [0, {n_layers}], got {skip_features}")
    return int(skip_features)


class PeriodDiscriminator(nn.Module):
    """Samples `period` apart as the rows of a 2-D image: conv kernels `(k, 1)` see one phase
    of the period at a time, so periodic structure (harmonics) is judged directly.

    `skip_features`: hidden layers, from the first, whose activations are not features (HiFi-GAN
    0; AP-BWE 1, its first layer is left out of feature matching).
    """

    def __init__(
        self,
        period: int,
        channels: Sequence[int] = (32, 128, 512, 1024, 1024),
        kernel_size: int = 5,
        stride: int = 3,
        skip_features: int = 0,
    ) -> None:
        super().__init__()
        if period < 1:
            raise ValueError(f"period must be >= 1, got {period}")
        self.period = int(period)
        layers, c_in = [], 1
        for i, c_out in enumerate(channels):
            s = stride if i < len(channels) - 1 else 1  # the last hidden layer keeps the length
            layers.append(
                weight_norm(
                    nn.Conv2d(c_in, c_out, (kernel_size, 1), (s, 1), padding=(kernel_size // 2, 0))
                )
            )
            c_in = c_out
        self.layers = nn.ModuleList(layers)
        self.out = weight_norm(nn.Conv2d(c_in, 1, (3, 1), 1, padding=(1, 0)))
        self.skip_features = check_skip_features(skip_features, len(layers))

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        b, t = x.shape
        pad = (-t) % self.period
        if pad:
            x = F.pad(x.unsqueeze(1), (0, pad), mode="reflect" if pad < t else "constant").squeeze(
                1
            )
        h = x.reshape(b, 1, -1, self.period)
        return conv_stack(self.layers, self.out, h, self.skip_features)


class MultiPeriodDiscriminator(nn.Module):
    """One `PeriodDiscriminator` per period (HiFi-GAN: 2, 3, 5, 7, 11, primes so that the
    periods do not overlap)."""

    def __init__(
        self,
        periods: Sequence[int] = (2, 3, 5, 7, 11),
        channels: Sequence[int] = (32, 128, 512, 1024, 1024),
        kernel_size: int = 5,
        stride: int = 3,
        skip_features: int = 0,
    ) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(
            PeriodDiscriminator(p, channels, kernel_size, stride, skip_features) for p in periods
        )

    def forward(self, x: Tensor) -> DiscriminatorOutput:
        return [d(x) for d in self.discriminators]


SPECTRUM_KINDS = ("amplitude", "phase")
AMPLITUDES = ("log", "linear")
WINDOWS = ("hann", "rectangular")
STACKS = ("univnet", "apbwe")
# AP-BWE's (Vocos's) stack, written for this module's (frames, bins) layout: per conv
# (kernel, stride, padding) as (time, frequency); its paper states them as (frequency, time)
APBWE_STACK = (
    ((5, 7), (2, 2), (2, 3)),
    ((3, 5), (1, 2), (1, 2)),
    ((3, 5), (2, 2), (1, 2)),
    ((3, 3), (1, 2), (1, 1)),
    ((3, 3), (2, 2), (1, 1)),
)


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


class SpectrogramDiscriminator(nn.Module):
    """A 2-D conv net over one STFT resolution: its amplitude, or its (wrapped) phase.

    `amplitude`: `log` (UnivNet-style, floored at 1e-5) or `linear` (AP-BWE's MRAD). `window`:
    `hann` or `rectangular` (AP-BWE's MRAD and MRPD). `stack`: `univnet` (the frequency axis
    strided down `n_strided` times, time keeps its resolution, kernels (3, 9)) or `apbwe` (five
    convs strided by 2 in frequency each and in time every other one, kernels 7x5, 5x3, 5x3, 3x3,
    3x3: AP-BWE's MRAD/MRPD, from Vocos). The STFT is taken in float32 outside autocast.
    """

    def __init__(
        self,
        n_fft: int,
        hop_length: int,
        win_length: int,
        kind: str = "amplitude",
        channels: int = 32,
        n_strided: int = 3,
        amplitude: str = "log",
        window: str = "hann",
        stack: str = "univnet",
    ) -> None:
        super().__init__()
        self.kind = check_choice("kind", kind, SPECTRUM_KINDS)
        self.amplitude = check_choice("amplitude", amplitude, AMPLITUDES)
        check_choice("window", window, WINDOWS)
        check_choice("stack", stack, STACKS)
        if not 0 < hop_length <= win_length <= n_fft:
            raise ValueError(
                f"need 0 < hop <= win_length <= n_fft, got {hop_length, win_length, n_fft}"
            )
        self.n_fft, self.hop_length, self.win_length = int(n_fft), int(hop_length), int(win_length)
        make_window = torch.hann_window if window == "hann" else torch.ones
        self.register_buffer("window", make_window(self.win_length), persistent=False)
        if stack == "univnet":
            convs = [weight_norm(nn.Conv2d(1, channels, (3, 9), padding=(1, 4)))]
            convs += [
                weight_norm(nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), padding=(1, 4)))
                for _ in range(n_strided)
            ]
            convs.append(weight_norm(nn.Conv2d(channels, channels, (3, 3), padding=(1, 1))))
        else:
            convs = [
                weight_norm(nn.Conv2d(1 if i == 0 else channels, channels, k, s, p))
                for i, (k, s, p) in enumerate(APBWE_STACK)
            ]
        self.layers = nn.ModuleList(convs)
        self.out = weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def spectrum(self, x: Tensor) -> Tensor:
        """`(B, T)` -> `(B, 1, frames, bins)`: amplitude (log or linear) or phase in radians."""
        device_type = x.device.type
        with torch.autocast(device_type, enabled=False):
            x = x.float()
            short = self.n_fft // 2 + 1 - x.shape[-1]
            if short > 0:
                x = F.pad(x, (0, short))
            spec = torch.stft(
                x,
                self.n_fft,
                self.hop_length,
                self.win_length,
                window=self.window,
                center=True,
                return_complex=True,
            )
            if self.kind == "amplitude":
                feat = spec.abs()
                if self.amplitude == "log":
                    feat = torch.log(feat.clamp(min=1e-5))
            else:
                # atan2's gradient is undefined at 0; a tiny offset keeps it finite
                feat = torch.atan2(spec.imag, spec.real + 1e-9)
        return feat.transpose(1, 2).unsqueeze(1)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        h = self.spectrum(x)
        return conv_stack(self.layers, self.out, h)


class MultiResolutionSpectrogramDiscriminator(nn.Module):
    """A `SpectrogramDiscriminator` per (resolution, kind): several time-frequency trade-offs,
    in amplitude and, with `kinds: [amplitude, phase]`, in phase as AP-BWE does (AP-BWE's MRAD
    and MRPD: `amplitude: linear`, `window: rectangular`, `stack: apbwe`, one per kind)."""

    def __init__(
        self,
        fft_sizes: Sequence[int] = (512, 1024, 2048),
        hop_sizes: Sequence[int] = (128, 256, 512),
        win_lengths: Sequence[int] = (512, 1024, 2048),
        kinds: Sequence[str] = ("amplitude",),
        channels: int = 32,
        amplitude: str = "log",
        window: str = "hann",
        stack: str = "univnet",
    ) -> None:
        super().__init__()
        fft_sizes, hop_sizes, win_lengths = list(fft_sizes), list(hop_sizes), list(win_lengths)
        if not fft_sizes or not len(fft_sizes) == len(hop_sizes) == len(win_lengths):
            raise ValueError(
                f"fft_sizes {fft_sizes}, hop_sizes {hop_sizes} and win_lengths {win_lengths} "
                "must be non-empty lists of equal length"
            )
        if not kinds:
            raise ValueError(f"kinds must name at least one of {SPECTRUM_KINDS}")
        self.discriminators = nn.ModuleList(
            SpectrogramDiscriminator(
                n, h, w, kind, channels, amplitude=amplitude, window=window, stack=stack
            )
            for kind in kinds
            for n, h, w in zip(fft_sizes, hop_sizes, win_lengths, strict=True)
        )

    def forward(self, x: Tensor) -> DiscriminatorOutput:
        return [d(x) for d in self.discriminators]
