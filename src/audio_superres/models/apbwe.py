"""AP-BWE (Lu, Ai, Du, Ling, IEEE/ACM TASLP 2024): amplitude and phase streams of ConvNeXt blocks.

The low-res signal is upsampled to the high rate, analysed by an STFT into log-amplitude
`log(|X| + eps)` and phase, and two parallel stacks of ConvNeXt blocks (one per stream, over STFT
frames, channels = features) predict the high-res log-amplitude (as a correction added to the
input's, as in the paper) and the high-res phase (two parallel linear outputs, a pseudo real and
imaginary part, through `atan2`). Before every pair of blocks the streams exchange information
(the amplitude stream adds the phase stream's features, then the phase stream adds the updated
amplitude features). An inverse STFT returns the waveform, cut to exactly `m * ratio` samples.

Choices of this implementation, and where they differ from the paper's code:

- Input resampler: `upsampler="cubic"` (the class default, so checkpoints from before the
  setting load unchanged) is the project's one cubic spline (`dsp.cubic.CubicUpsample`), whose
  small images above the low-res Nyquist the network sees in its input spectrum; the residual
  start (below) then starts at exactly the cubic baseline. `upsampler="sinc"`
  (`dsp.sinc.SincUpsample`, a Kaiser-windowed sinc with its stopband from the low-res Nyquist
  on) is closer to the paper, which resamples with torchaudio's windowed sinc: no images.
- STFT sizes: the paper's n_fft 1024, hop 80, window 320 (Hann). Its 48 kHz configs keep these
  same sizes in samples (so frames are 3x shorter in time at 48 kHz); that is the default here
  at every rate. `stft_reference_rate` (e.g. 16000) instead scales all three with
  `sample_rate / stft_reference_rate`, keeping the frames' duration in seconds.
- Padding: the STFT zero-pads the signal's ends (`center=True, pad_mode="constant"`; the paper
  pads by reflection). Zero padding is defined for any length m >= 1, and the output near an end
  does not depend on how long the signal is, so chunked inference equals whole-file inference.
- Inverse of the log-amplitude: the spectrum is `(exp(A) - eps) * e^{i phase}`, the exact inverse
  of the analysis `A = log(|X| + eps)` (the paper uses `exp(A)`, 1e-4 too large in every bin).
  A negative `exp(A) - eps` is a phase flip, so the map is smooth and has no dead zone.
- `residual=True` (not in the paper, whose phase is predicted from scratch): the phase outputs
  are added to the input's `(cos, sin)` before `atan2` and the three output layers start at zero,
  so an untrained model returns its upsampled input up to float rounding and trains from that
  baseline, as `AudioUNet` starts at its upsampled input. This is what a short CPU run needs.
- Computed in float32 outside autocast: the STFT, log/exp, the residual sums and `atan2`; the
  layers (blocks and output layers) may run in bf16 under autocast.

The model's receptive field is finite: an output sample depends on the input within
`win_length + (pre_kernel // 2 + layers * (block_kernel // 2)) * hop_length` high-res samples
(plus the input upsampler's context), and its frame grid repeats every `hop_length` samples.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from audio_superres.dsp.amplitude_phase import (
    AmplitudePhaseSTFT,
    InverseAmplitudePhaseSTFT,
    float32_region,
)
from audio_superres.models.base import UPSAMPLER_CONTEXT, SuperResModel, make_upsampler

__all__ = ["APBWE", "ConvNeXtBlock", "FrameDepthwiseConv"]


class FrameDepthwiseConv(nn.Conv1d):
    """A depthwise `Conv1d` over frames applied to `(B, T, C)` features (frames first, channels
    last, as the blocks' LayerNorm and Linears want them).

    The same parameters as `nn.Conv1d(C, C, k, groups=C)`; it runs as a channels-last `conv2d`
    on a view of the input, so neither the input nor the output is transposed in memory (on a
    CPU also 1.8x faster than the `(B, C, T)` depthwise conv's backward).
    """

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels)

    def forward(self, x: Tensor) -> Tensor:
        planes = x.transpose(1, 2).unsqueeze(2)  # (B, C, 1, T), channels-last in memory
        y = F.conv2d(
            planes, self.weight.unsqueeze(2), self.bias, padding=(0, self.padding[0]),
            groups=self.groups,
        )
        return y.squeeze(2).transpose(1, 2)


class ConvNeXtBlock(nn.Module):
    """ConvNeXt block over frames (Liu et al. 2022, in 1-D as Vocos and AP-BWE use it).

    depthwise Conv1d(k) -> LayerNorm -> Linear(C, 3C) -> GELU -> Linear(3C, C) -> x layer scale
    -> + input. Works on `(B, T, C)` (frames first: no transposes between the layers).
    """

    def __init__(
        self, channels: int, kernel_size: int = 7, expansion: int = 3, layer_scale: float = 1.0
    ) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (centred), got {kernel_size}")
        self.dwconv = FrameDepthwiseConv(channels, kernel_size)
        self.norm = nn.LayerNorm(channels, eps=1e-6)
        self.pwconv1 = nn.Linear(channels, expansion * channels)
        self.pwconv2 = nn.Linear(expansion * channels, channels)
        self.gamma = nn.Parameter(torch.full((channels,), float(layer_scale)))

    def forward(self, x: Tensor) -> Tensor:
        y = self.pwconv2(F.gelu(self.pwconv1(self.norm(self.dwconv(x)))))
        return x + self.gamma * y


class APBWE(SuperResModel):
    """AP-BWE generator: LR `(B, m)` -> HR `(B, m * ratio)` through amplitude and phase streams.

    Args:
        ratio: upsampling ratio.
        sample_rate: high-res rate; only used with `stft_reference_rate`.
        channels: ConvNeXt channels (paper 512).
        layers: ConvNeXt blocks per stream (paper 8).
        n_fft, hop_length, win_length: STFT sizes in samples at `stft_reference_rate`
            (paper 1024, 80, 320).
        stft_reference_rate: None keeps the sizes in samples at any rate (the paper's 16 and
            48 kHz configs); a rate scales them by `sample_rate / stft_reference_rate`.
        residual: start at the input (phase as a correction of the input's, output layers at
            zero); False is the paper.
        pre_kernel, block_kernel, expansion: the input conv's and the blocks' depthwise kernel
            sizes and the blocks' MLP expansion (paper 7, 7, 3).
        upsampler: the input resampler, "cubic" (the 2017 spline) or "sinc" (no images above
            the low-res Nyquist; the paper resamples with a windowed sinc).
    """

    def __init__(
        self,
        ratio: int,
        sample_rate: int = 16000,
        channels: int = 512,
        layers: int = 8,
        n_fft: int = 1024,
        hop_length: int = 80,
        win_length: int = 320,
        stft_reference_rate: int | None = None,
        residual: bool = False,
        pre_kernel: int = 7,
        block_kernel: int = 7,
        expansion: int = 3,
        upsampler: str = "cubic",
    ) -> None:
        super().__init__(ratio)
        if channels < 1 or layers < 0:
            raise ValueError(f"need channels >= 1 and layers >= 0, got {channels}, {layers}")
        if pre_kernel % 2 == 0:
            raise ValueError(f"pre_kernel must be odd (centred), got {pre_kernel}")
        self.sample_rate = int(sample_rate)
        if stft_reference_rate:
            scale = self.sample_rate / int(stft_reference_rate)
            n_fft, hop_length, win_length = (
                max(1, round(v * scale)) for v in (n_fft, hop_length, win_length)
            )
        self.n_fft, self.hop_length, self.win_length = n_fft, hop_length, win_length
        self.channels, self.layers, self.residual = channels, layers, bool(residual)
        self.pre_kernel, self.block_kernel = pre_kernel, block_kernel
        self.stft = AmplitudePhaseSTFT(n_fft, hop_length, win_length)  # checks the sizes
        self.istft = InverseAmplitudePhaseSTFT(n_fft, hop_length, win_length)
        # "cubic" by default: checkpoints from before the setting (no key) keep their spline
        self.upsample = make_upsampler(upsampler, self.ratio)
        self.upsampler = upsampler
        bins = n_fft // 2 + 1
        self.amplitude_in = nn.Conv1d(bins, channels, pre_kernel, padding=pre_kernel // 2)
        self.phase_in = nn.Conv1d(bins, channels, pre_kernel, padding=pre_kernel // 2)
        self.amplitude_in_norm = nn.LayerNorm(channels, eps=1e-6)
        self.phase_in_norm = nn.LayerNorm(channels, eps=1e-6)
        layer_scale = 1.0 / max(layers, 1)  # 1 / layers, as the paper
        self.amplitude_blocks = nn.ModuleList(
            ConvNeXtBlock(channels, block_kernel, expansion, layer_scale) for _ in range(layers)
        )
        self.phase_blocks = nn.ModuleList(
            ConvNeXtBlock(channels, block_kernel, expansion, layer_scale) for _ in range(layers)
        )
        self.amplitude_out_norm = nn.LayerNorm(channels, eps=1e-6)
        self.phase_out_norm = nn.LayerNorm(channels, eps=1e-6)
        self.apply(self._init_weights)  # before the output layers, as the paper
        self.amplitude_out = nn.Linear(channels, bins)
        self.phase_out_real = nn.Linear(channels, bins)
        self.phase_out_imag = nn.Linear(channels, bins)
        if self.residual:
            for layer in (self.amplitude_out, self.phase_out_real, self.phase_out_imag):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Conv1d, nn.Linear)):
            nn.init.trunc_normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)

    @property
    def frame_context(self) -> int:
        """Frames each side that one output frame depends on (input conv + depthwise convs)."""
        return self.pre_kernel // 2 + self.layers * (self.block_kernel // 2)

    @property
    def chunk_alignment(self) -> int:
        return self.hop_length

    @property
    def context(self) -> int:
        """LR samples each side: the frames' reach in HR samples (a full window each side of the
        frame context), then the input upsampler's."""
        hr = self.win_length + self.frame_context * self.hop_length
        return math.ceil(hr / self.ratio) + 1 + UPSAMPLER_CONTEXT[self.upsampler]

    def predict_spectrum(self, lr: Tensor) -> tuple[Tensor, Tensor]:
        """LR `(B, m)` -> the predicted HR log-amplitude and phase `(B, n_fft//2+1, frames)`.

        The generator's own spectrum, before the inverse STFT (for AP-BWE's consistency loss).
        """
        if lr.ndim != 2:
            raise ValueError(f"expected LR audio (B, m), got shape {tuple(lr.shape)}")
        log_amp, phase = self.stft(self.upsample(lr))
        # the streams are (B, frames, channels) from here on: the blocks' layout
        a = self.amplitude_in(log_amp.to(self.amplitude_in.weight.dtype)).transpose(1, 2)
        p = self.phase_in(phase.to(self.phase_in.weight.dtype)).transpose(1, 2)
        a, p = self.amplitude_in_norm(a), self.phase_in_norm(p)
        for amplitude_block, phase_block in zip(
            self.amplitude_blocks, self.phase_blocks, strict=True
        ):
            a = a + p  # the streams exchange information before every pair of blocks
            p = p + a
            a, p = amplitude_block(a), phase_block(p)
        a, p = self.amplitude_out_norm(a), self.phase_out_norm(p)
        # the output layers are layers like the others (bf16 under autocast: in float32 they
        # were a tenth of a CPU training step); what they feed is float32
        amp_out, real, imag = self.amplitude_out(a), self.phase_out_real(p), self.phase_out_imag(p)
        with float32_region(lr.device):
            wide = torch.promote_types(amp_out.dtype, torch.float32)  # float32 at least
            out_log_amp = log_amp + amp_out.to(wide).transpose(1, 2)
            real, imag = real.to(wide).transpose(1, 2), imag.to(wide).transpose(1, 2)
            if self.residual:
                real, imag = real + torch.cos(phase), imag + torch.sin(phase)
            return out_log_amp, torch.atan2(imag, real)

    def forward_with_spectrum(self, lr: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """The HR waveform and the spectrum it was synthesised from (`predict_spectrum`): what
        AP-BWE's losses are computed on (`objective.generator_spectrum`)."""
        log_amp, phase = self.predict_spectrum(lr)
        wave = self.istft(log_amp, phase, lr.shape[-1] * self.ratio).to(lr.dtype)
        return wave, (log_amp, phase)

    def forward(self, lr: Tensor) -> Tensor:
        return self.forward_with_spectrum(lr)[0]

    def extra_repr(self) -> str:
        return (
            f"ratio={self.ratio}, channels={self.channels}, layers={self.layers}, "
            f"n_fft={self.n_fft}, hop_length={self.hop_length}, win_length={self.win_length}, "
            f"residual={self.residual}, upsampler={self.upsampler}"
        )
