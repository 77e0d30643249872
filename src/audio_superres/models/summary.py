"""Parameter count and forward cost of a model config, counted from its layers.

    python -m audio_superres.models.summary model=NAME ratio=R [sample_rate=SR] [model.x=...]

The arguments are Hydra overrides of `conf/train.yaml`. The cost is measured, not looked up:
forward hooks count the multiply-accumulates (MACs) of every layer during one real forward pass
over one second of low-res input, and GFLOP = 2 x GMAC. Counted: Conv1d and Linear (weights), LSTM
(gate matmuls and cell products), BatchNorm (one per element), TFiLM's scaling (one per element),
the cubic spline (a 58-tap filter per output sample) and the windowed sinc (65 taps per output
sample, `upsampler: sinc`); for AP-BWE, depthwise convs (as convs: kernel MACs per output),
LayerNorm (two per element: statistics, then scale) and each STFT / inverse STFT frame (the window,
N MACs, plus an N-point FFT at the usual complex-FFT count of 5 N log2 N FLOP = 2.5 N log2 N MACs; a
real FFT needs about half). Not counted: biases, activations, pooling, dropout, additions and
reshapes, the convention of REFERENCE section 2 (71.7 GMAC per 8192-sample patch for the paper
U-Net). The CLI builds the model on PyTorch's `meta` device (shapes only, no memory, no arithmetic),
which gives the same counts instantly.
"""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from audio_superres.dsp import cubic as _cubic
from audio_superres.dsp.amplitude_phase import AmplitudePhaseSTFT, InverseAmplitudePhaseSTFT
from audio_superres.dsp.cubic import CubicUpsample
from audio_superres.dsp.sinc import SincUpsample
from audio_superres.models.layers import count_parameters
from audio_superres.models.tfilm import TFiLM

__all__ = ["count_macs", "main", "model_summary"]

SPLINE_TAPS = _cubic._C  # low-res samples each interior output sample of the spline combines


def _first(x: Any) -> Tensor:
    return x[0] if isinstance(x, (tuple, list)) else x


def _conv_macs(m: nn.Conv1d, inputs: tuple, output: Tensor) -> int:
    return output.numel() * (m.in_channels // m.groups) * m.kernel_size[0]


def _linear_macs(m: nn.Linear, inputs: tuple, output: Tensor) -> int:
    return output.numel() * m.in_features


def _lstm_macs(m: nn.LSTM, inputs: tuple, output: Any) -> int:
    x = inputs[0]
    if isinstance(x, nn.utils.rnn.PackedSequence):
        steps = x.data.shape[0]
    else:
        steps = x.numel() // m.input_size  # batch * time, batched or not
    h, dirs = m.hidden_size, 2 if m.bidirectional else 1
    out = m.proj_size or h  # with proj_size the recurrent state and the output are projected
    total = 0
    for layer in range(m.num_layers):
        cin = m.input_size if layer == 0 else out * dirs
        # 4 gates; c = f*c + i*g; h = o*tanh(c); then the projection h -> proj_size if any
        total += dirs * (4 * h * (cin + out) + 3 * h + (h * out if m.proj_size else 0))
    return steps * total


def _elementwise_macs(m: nn.Module, inputs: tuple, output: Any) -> int:
    return _first(output).numel()


def _spline_macs(m: nn.Module, inputs: tuple, output: Tensor) -> int:
    return output.numel() * SPLINE_TAPS


def _sinc_macs(m: SincUpsample, inputs: tuple, output: Tensor) -> int:
    return output.numel() * m.taps


def _layer_norm_macs(m: nn.LayerNorm, inputs: tuple, output: Tensor) -> int:
    return 2 * output.numel()


def _fft_frame_macs(n_fft: int) -> float:
    return n_fft + 2.5 * n_fft * math.log2(n_fft)


def _stft_macs(m: AmplitudePhaseSTFT, inputs: tuple, output: tuple[Tensor, Tensor]) -> int:
    frames = output[0].numel() // output[0].shape[-2]  # batch x frames
    return round(frames * _fft_frame_macs(m.n_fft))


def _istft_macs(m: InverseAmplitudePhaseSTFT, inputs: tuple, output: Tensor) -> int:
    frames = inputs[0].numel() // inputs[0].shape[-2]
    return round(frames * _fft_frame_macs(m.n_fft))


MAC_COUNTERS: dict[type[nn.Module], Callable[[Any, tuple, Any], int]] = {
    nn.Conv1d: _conv_macs,
    nn.Linear: _linear_macs,
    nn.LSTM: _lstm_macs,
    nn.BatchNorm1d: _elementwise_macs,
    TFiLM: _elementwise_macs,  # its own multiply; its LSTM is counted as an LSTM
    CubicUpsample: _spline_macs,
    SincUpsample: _sinc_macs,
    nn.LayerNorm: _layer_norm_macs,
    AmplitudePhaseSTFT: _stft_macs,
    InverseAmplitudePhaseSTFT: _istft_macs,
}


def count_macs(model: nn.Module, *inputs: Tensor) -> dict[str, int]:
    """MACs of one `model(*inputs)` call, by layer type, counted by forward hooks."""
    counts: dict[str, int] = defaultdict(int)

    def hook_for(
        name: str, counter: Callable[[Any, tuple, Any], int]
    ) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            counts[name] += int(counter(module, args, output))

        return hook

    handles = []
    for module in model.modules():
        for cls, counter in MAC_COUNTERS.items():
            if isinstance(module, cls):
                # by layer family: a subclass (a depthwise conv over frames) counts as its base
                handles.append(module.register_forward_hook(hook_for(cls.__name__, counter)))
                break
    try:
        model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return dict(counts)


def _model_device(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


@torch.no_grad()
def model_summary(
    model: nn.Module, ratio: int, sample_rate: int, seconds: float = 1.0
) -> dict[str, Any]:
    """Parameters and forward cost per second of audio of `model` (LR `(B, m)` -> `(B, m*r)`).

    Runs one eval-mode forward on `ceil(seconds * sample_rate / ratio)` low-res samples (batch 1)
    on the model's device (`meta` works and costs nothing) and normalises the counted MACs by
    the high-res duration actually covered. The model's train/eval mode is restored.
    """
    ratio, sample_rate = int(ratio), int(sample_rate)
    m = max(1, math.ceil(seconds * sample_rate / ratio))
    covered = m * ratio / sample_rate
    lr = torch.zeros(1, m, device=_model_device(model))
    was_training = model.training
    model.eval()
    try:
        by_layer = count_macs(model, lr)
    finally:
        model.train(was_training)
    macs = sum(by_layer.values())
    return {
        "parameters": count_parameters(model),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "ratio": ratio,
        "sample_rate": sample_rate,
        "lr_samples": m,
        "hr_samples": m * ratio,
        "seconds": covered,
        "macs_per_second": macs / covered,
        "gmac_per_second": macs / covered / 1e9,
        "gflop_per_second": 2 * macs / covered / 1e9,
        "macs_by_layer": {k: v / covered for k, v in sorted(by_layer.items())},
    }


# ---- command line ------------------------------------------------------------------------------
def _fmt(x: float) -> str:
    return f"{x:.1f}" if x >= 100 else f"{x:.4g}"


def _build(model_cfg: dict[str, Any], device: str) -> nn.Module:
    from audio_superres.checkpoint import instantiate_trusted

    with torch.device(device):
        return instantiate_trusted(model_cfg, "model")


def counted_summary(
    build: Callable[[str], nn.Module], ratio: int, sample_rate: int
) -> dict[str, Any]:
    """`model_summary` of `build(device)` on the meta device (shapes only: instant and
    memory-free, the same counts), or for real on the CPU when an op has no meta kernel
    (AP-BWE's iSTFT)."""
    try:
        return model_summary(build("meta"), ratio, sample_rate)
    except (NotImplementedError, RuntimeError):
        return model_summary(build("cpu"), ratio, sample_rate)


def main(argv: Sequence[str] | None = None) -> int:
    from omegaconf import OmegaConf

    from audio_superres.runs import compose_config, find_conf_dir

    overrides = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in overrides):
        print(__doc__.strip())
        return 0
    conf = find_conf_dir()
    valid = sorted(p.stem for p in (conf / "model").glob("*.yaml"))
    for arg in overrides:
        if arg.startswith("model="):
            name = arg.split("=", 1)[1]
            if name not in valid:
                print(
                    f"error: unknown model '{name}'; valid models: {', '.join(valid)}",
                    file=sys.stderr,
                )
                return 2
    try:
        cfg = compose_config(overrides, return_hydra_config=True)
    except Exception as exc:  # noqa: BLE001 - any bad override: say which, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    name = cfg.hydra.runtime.choices.get("model", "?")
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    ratio, sample_rate = int(cfg.ratio), int(cfg.sample_rate)
    summary = counted_summary(lambda device: _build(model_cfg, device), ratio, sample_rate)

    print(f"model: {name} ({model_cfg['_target_']})")
    print(f"ratio: {ratio}")
    print(f"sample_rate: {sample_rate}")
    print(f"parameters: {summary['parameters']} ({summary['parameters'] / 1e6:.3f} M)")
    print(f"GMAC per second of audio: {_fmt(summary['gmac_per_second'])}")
    print(f"GFLOP per second of audio: {_fmt(summary['gflop_per_second'])}")
    print(
        f"  (one forward of {summary['lr_samples']} low-res -> {summary['hr_samples']} "
        f"high-res samples = {summary['seconds']:.4f} s; GFLOP = 2 x GMAC)"
    )
    total = sum(summary["macs_by_layer"].values()) or 1.0
    for layer, macs in sorted(summary["macs_by_layer"].items(), key=lambda kv: -kv[1]):
        print(f"  {layer}: {_fmt(2 * macs / 1e9)} GFLOP/s ({100 * macs / total:.1f}%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
