"""`python -m audio_superres.models.summary`: parameters and GFLOP per second, counted."""

from __future__ import annotations

import re

import pytest
import torch

from audio_superres.dsp.resample import SINC_HALF_WIDTH
from audio_superres.models import AudioUNet, DNNBaseline, TFiLMUNet
from audio_superres.models.summary import SPLINE_TAPS, count_macs, main, model_summary

# REFERENCE section 2: about 71.7 GMAC per 8192-sample patch, 16 kHz
PAPER_GFLOP_PER_SECOND = 2 * 71.7e9 * 16000 / 8192 / 1e9


def unet_macs(n: int, filters, kernels, bottleneck_filters, bottleneck_kernel, final_kernel=9):
    """Conv MACs of AudioUNet on n high-res samples (n a multiple of 2^(depth+1)), by hand."""
    macs, cin, length = 0, 1, n
    for f, k in zip(filters, kernels, strict=True):
        length //= 2
        macs += length * f * cin * k
        cin = f
    length //= 2
    macs += length * bottleneck_filters * cin * bottleneck_kernel
    cin = bottleneck_filters
    for f, k in reversed(list(zip(filters, kernels, strict=True))):
        macs += length * 2 * f * cin * k
        length *= 2
        cin = 2 * f
    return macs + length * 2 * cin * final_kernel


def test_paper_unet_matches_the_reference():
    with torch.device("meta"):
        model = AudioUNet(ratio=4)
    s = model_summary(model, ratio=4, sample_rate=16000)
    assert s["parameters"] == 70_977_154
    assert s["hr_samples"] == 16000 and s["seconds"] == 1.0
    assert s["gflop_per_second"] == pytest.approx(PAPER_GFLOP_PER_SECOND, rel=0.02)
    per_patch = unet_macs(8192, [128, 384, 512, 512], [65, 33, 17, 9], 512, 9)
    assert per_patch == pytest.approx(71.7e9, rel=1e-3)


def test_cli_prints_the_reference_figures(capsys):
    assert main(["model=audiounet", "ratio=4"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^parameters: 70977154\b", out, re.M)
    gflops = float(re.search(r"^GFLOP per second of audio: ([\d.]+)", out, re.M).group(1))
    assert gflops == pytest.approx(PAPER_GFLOP_PER_SECOND, rel=0.02)


def test_cli_sample_rate_override_scales_the_cost(capsys):
    assert main(["model=audiounet_small", "ratio=2", "sample_rate=32000"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^sample_rate: 32000$", out, re.M)
    assert "16000 low-res -> 32000 high-res" in out


def test_unknown_model_lists_the_valid_ones(capsys):
    assert main(["model=nosuchnet", "ratio=4"]) == 2
    err = capsys.readouterr().err
    assert "nosuchnet" in err
    for name in ("audiounet", "audiounet_small", "cubic", "dnn", "tfilm", "tfilm_small"):
        assert re.search(rf"\b{name}\b", err)


def test_cost_is_counted_from_the_layers():
    """Exact hand count for small nets; it follows the filters, kernels and ratio."""
    small = dict(filters=[8, 16], kernels=[9, 5], bottleneck_filters=16, bottleneck_kernel=5)
    wide = {**small, "filters": [16, 32]}
    for sizes in (small, wide):
        model = AudioUNet(ratio=4, **sizes)
        counts = count_macs(model, torch.zeros(1, 256))  # 1024 HR samples, no padding
        assert counts["Conv1d"] == unet_macs(1024, **sizes)
        assert counts["CubicUpsample"] == 1024 * SPLINE_TAPS
        sinc = count_macs(AudioUNet(ratio=4, upsampler="sinc", **sizes), torch.zeros(1, 256))
        assert "CubicUpsample" not in sinc and sinc["Conv1d"] == counts["Conv1d"]
        assert sinc["SincUpsample"] == 1024 * (2 * SINC_HALF_WIDTH + 1)
    s_small = model_summary(AudioUNet(ratio=4, **small), 4, 16000)
    s_wide = model_summary(AudioUNet(ratio=4, **wide), 4, 16000)
    assert s_wide["gflop_per_second"] > 2 * s_small["gflop_per_second"]


def test_tfilm_and_dnn_costs():
    sizes = dict(filters=[8, 16], kernels=[9, 5], bottleneck_filters=16, bottleneck_kernel=5)
    tfilm = count_macs(TFiLMUNet(ratio=2, block_sizes=8, **sizes), torch.zeros(1, 512))
    # max-pool downsampling: the down convs run at stride 1, twice the strided U-Net's cost
    plain = unet_macs(1024, **sizes)
    down = 512 * 8 * 9 + 256 * 16 * 8 * 5 + 128 * 16 * 16 * 5
    assert tfilm["Conv1d"] == plain + down
    # LSTM: per block and layer 4H(I + H) + 3H, H = I = channels; blocks: 512/8 at every level
    steps = 64
    lstm = sum(steps * (8 * c * c + 3 * c) for c in (8, 16, 16, 16, 8))
    assert tfilm["LSTM"] == lstm
    dnn = DNNBaseline(ratio=4, patch_len=64, hidden_sizes=[32, 16])
    counts = count_macs(dnn.eval(), torch.zeros(1, 40))  # 160 HR -> 3 patches
    assert counts["Linear"] == 3 * (64 * 32 + 32 * 16 + 16 * 64)
    assert counts["BatchNorm1d"] == 3 * (32 + 16)


def test_summary_restores_the_mode_and_matches_a_real_forward():
    sizes = dict(filters=[8, 16], kernels=[9, 5], bottleneck_filters=16, bottleneck_kernel=5)
    model = TFiLMUNet(ratio=3, **sizes).train()
    real = model_summary(model, 3, 8000)
    assert model.training
    with torch.device("meta"):
        meta = model_summary(TFiLMUNet(ratio=3, **sizes), 3, 8000)
    assert real == meta and real["lr_samples"] == 2667


@pytest.mark.parametrize("proj_size", [0, 3])
def test_lstm_macs_match_its_weight_count(proj_size):
    # per step: one MAC per weight (input, recurrent and projection matrices) + 3H elementwise
    lstm = torch.nn.LSTM(
        5, 7, num_layers=2, bidirectional=True, batch_first=True, proj_size=proj_size
    )
    weights = sum(p.numel() for name, p in lstm.named_parameters() if name.startswith("weight"))
    steps = 2 * 11
    assert count_macs(lstm, torch.zeros(2, 11, 5))["LSTM"] == steps * (weights + 2 * 2 * 3 * 7)
