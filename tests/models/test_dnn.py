"""DNNBaseline: dense layers over fixed cubic-upsampled patches, run patch by patch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from audio_superres.dsp.cubic import CubicUpsample
from audio_superres.models import DNNBaseline
from audio_superres.models.layers import count_parameters


def test_whole_signals_run_patch_by_patch():
    torch.manual_seed(0)
    model = DNNBaseline(ratio=2, patch_len=32, hidden_sizes=[16, 16])
    with torch.no_grad():
        model.train()(torch.randn(8, 64))  # non-trivial batch-norm statistics
        nn.init.normal_(model.out.weight, std=0.1)  # a visible residual
    model.eval()
    lr = torch.randn(2, 40)  # HR 80 = two full patches and a partial one
    cubic = CubicUpsample(2)(lr)
    with torch.no_grad():
        out = model(lr)
        by_patch = [model.forward_from_cubic(cubic[:, i : i + 32]) for i in (0, 32)]
    assert torch.allclose(out[:, :64], torch.cat(by_patch, dim=-1), atol=1e-6)
    assert not torch.allclose(out, cubic, atol=1e-3)


def test_untrained_model_is_close_to_cubic():
    torch.manual_seed(0)
    model = DNNBaseline(ratio=4, patch_len=64, hidden_sizes=[32]).eval()
    lr = torch.randn(3, 100)
    cubic = CubicUpsample(4)(lr)
    out = model(lr)
    assert (out - cubic).pow(2).mean() < 1e-2 * cubic.pow(2).mean()
    assert not torch.equal(out, cubic)


def test_layers_and_parameter_count():
    model = DNNBaseline(ratio=4, patch_len=2048, hidden_sizes=[1024, 1024, 1024])
    widths = [2048, 1024, 1024, 1024, 2048]
    linear = sum(i * o + o for i, o in zip(widths[:-1], widths[1:], strict=True))
    norms = 2 * sum(widths[1:-1])
    assert count_parameters(model) == linear + norms == 6_302_720
    assert [b.skip for b in model.blocks] == [False, True, True]
    assert all(isinstance(b.norm, nn.BatchNorm1d) for b in model.blocks)
    assert all(b.negative_slope == 0.2 for b in model.blocks)


def test_skip_adds_the_layer_input():
    model = DNNBaseline(ratio=2, patch_len=8, hidden_sizes=[8], layer_skips=True).eval()
    block = model.blocks[0]
    x = torch.randn(4, 8)
    no_skip = torch.nn.functional.leaky_relu(block.norm(block.linear(x)), 0.2)
    assert torch.allclose(block(x), no_skip + x)


def test_a_single_patch_trains_with_running_statistics():
    model = DNNBaseline(ratio=2, patch_len=16, hidden_sizes=[8]).train()
    before = model.blocks[0].norm.running_mean.clone()
    out = model(torch.randn(1, 8))  # one patch, batch of one: no batch statistics
    out.sum().backward()
    assert out.shape == (1, 16)
    assert torch.equal(model.blocks[0].norm.running_mean, before)


@pytest.mark.parametrize(
    "kwargs", [dict(patch_len=0), dict(hidden_sizes=[]), dict(hidden_sizes=[8, 0])]
)
def test_bad_sizes_are_rejected(kwargs):
    with pytest.raises(ValueError):
        DNNBaseline(ratio=2, **kwargs)
