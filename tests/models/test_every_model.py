"""Contracts every model keeps: shapes, gradients, save/load (tiny sizes; fast)."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
import torch
from torch import nn

from audio_superres.models import APBWE, AudioUNet, CubicBaseline, DNNBaseline, TFiLMUNet

UNET = dict(filters=[8, 16, 16], kernels=[9, 7, 5], bottleneck_filters=16, bottleneck_kernel=5)

TINY: dict[str, Callable[[int], nn.Module]] = {
    "audiounet": lambda r: AudioUNet(ratio=r, **UNET),
    "tfilm": lambda r: TFiLMUNet(ratio=r, block_sizes=8, **UNET),
    "dnn": lambda r: DNNBaseline(ratio=r, patch_len=64, hidden_sizes=[32, 32]),
    "cubic": lambda r: CubicBaseline(ratio=r),
    "apbwe": lambda r: APBWE(r, channels=8, layers=2, n_fft=128, hop_length=16, win_length=64),
}


@pytest.mark.parametrize("name", sorted(TINY))
@pytest.mark.parametrize("ratio", [2, 3, 4, 6, 8])
def test_output_shape_for_every_ratio_and_odd_lengths(name, ratio):
    torch.manual_seed(0)
    model = TINY[name](ratio).eval()
    assert model.ratio == ratio
    with torch.no_grad():
        for m in (1, 7, 64, 333):
            out = model(torch.randn(2, m))
            assert out.shape == (2, m * ratio), (name, ratio, m)
            assert out.dtype == torch.float32 and torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(TINY))
def test_training_mode_shape(name):
    model = TINY[name](4).train()
    assert model(torch.randn(3, 77)).shape == (3, 308)


@pytest.mark.parametrize("name", sorted(set(TINY) - {"cubic"}))
def test_gradients_reach_every_parameter(name):
    torch.manual_seed(0)
    model = TINY[name](4).train()
    lr, hr = torch.randn(2, 128), torch.randn(2, 512)
    (model(lr) - hr).pow(2).mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", sorted(TINY))
def test_save_load_round_trip_gives_identical_output(name):
    torch.manual_seed(0)
    model = TINY[name](3)
    with torch.no_grad():  # a training step's worth of running statistics (batch norm)
        model.train()(torch.randn(4, 100))
    model.eval()
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    torch.manual_seed(1)  # a differently initialised twin
    other = TINY[name](3).eval()
    other.load_state_dict(torch.load(buf, weights_only=True))
    lr = torch.randn(2, 101)
    with torch.no_grad():
        assert torch.equal(model(lr), other(lr))
