import io

import pytest
import torch

from audio_superres.dsp.cubic import CubicUpsample
from audio_superres.models import AudioUNet, CubicBaseline
from audio_superres.models.layers import count_parameters, subpixel1d

SMALL = dict(filters=[8, 16, 16], kernels=[9, 7, 5], bottleneck_filters=16, bottleneck_kernel=5)


def paper_parameter_count(filters, kernels, bottleneck_filters, bottleneck_kernel, final_kernel):
    """Count by hand, layer by layer, as REFERENCE section 2 describes the network (with biases)."""
    total, cin = 0, 1
    for f, k in zip(filters, kernels, strict=True):  # down: Conv1d(cin -> f, k, stride 2)
        total += cin * f * k + f
        cin = f
    total += cin * bottleneck_filters * bottleneck_kernel + bottleneck_filters
    cin = bottleneck_filters
    for f, k in reversed(
        list(zip(filters, kernels, strict=True))
    ):  # up: Conv1d(cin -> 2f, k); subpixel; concat
        total += cin * 2 * f * k + 2 * f
        cin = 2 * f
    total += cin * 2 * final_kernel + 2  # last: Conv1d(cin -> 2, 9); subpixel
    return total


def test_paper_unet_parameter_count():
    model = AudioUNet(ratio=4)
    by_hand = paper_parameter_count([128, 384, 512, 512], [65, 33, 17, 9], 512, 9, 9)
    assert by_hand == 70_977_154
    assert count_parameters(model) == by_hand


def test_subpixel_matches_tensorflow_batch_to_space_order():
    # out[c, w*r + i] = in[i*C + c, w]
    x = torch.arange(2 * 6 * 3, dtype=torch.float32).view(2, 6, 3)
    y = subpixel1d(x, 2)
    assert y.shape == (2, 3, 6)
    for c in range(3):
        for w in range(3):
            for i in range(2):
                assert y[1, c, w * 2 + i] == x[1, i * 3 + c, w]


@pytest.mark.parametrize("ratio", [2, 3, 4, 6, 8])
@pytest.mark.parametrize("m", [7, 64, 333])
def test_any_ratio_any_length(ratio, m):
    model = AudioUNet(ratio=ratio, **SMALL).eval()
    lr = torch.randn(2, m)
    out = model(lr)
    assert out.shape == (2, m * ratio)
    assert torch.isfinite(out).all()


def test_untrained_model_is_close_to_cubic():
    torch.manual_seed(0)
    model = AudioUNet(ratio=4, **SMALL).eval()
    lr = torch.randn(3, 256)
    cubic = CubicUpsample(4)(lr)
    out = model(lr)
    # the last conv starts at N(0, 1e-3): the residual is tiny next to the signal
    assert (out - cubic).pow(2).mean() < 1e-2 * cubic.pow(2).mean()
    assert not torch.equal(out, cubic)


def test_architecture_follows_the_paper():
    model = AudioUNet(ratio=4)
    assert [b.conv.kernel_size[0] for b in model.down] == [65, 33, 17, 9]
    assert [b.conv.out_channels for b in model.down] == [128, 384, 512, 512]
    assert all(b.conv.stride[0] == 2 for b in model.down)
    assert model.bottleneck.conv.out_channels == 512 and model.bottleneck.conv.stride[0] == 2
    assert [b.conv.out_channels for b in model.up] == [1024, 1024, 768, 256]
    assert [b.dropout.p for b in model.up] == [0.5] * 4
    assert model.final.out_channels == 2
    assert model.final.weight.std() < 3e-3
    # orthogonal init: rows of the flattened weight are orthonormal (fewer rows than columns)
    w = model.down[1].conv.weight.flatten(1)
    eye = w @ w.T
    assert torch.allclose(eye, torch.eye(eye.shape[0]), atol=1e-4)


def test_gradients_reach_every_parameter():
    model = AudioUNet(ratio=4, **SMALL)
    out = model(torch.randn(2, 128))
    out.pow(2).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_save_load_round_trip_gives_identical_output():
    model = AudioUNet(ratio=2, **SMALL).eval()
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    other = AudioUNet(ratio=2, **SMALL).eval()
    other.load_state_dict(torch.load(buf, weights_only=True))
    lr = torch.randn(1, 100)
    assert torch.equal(model(lr), other(lr))


def test_cubic_baseline_has_no_parameters_and_equals_the_spline():
    lr = torch.randn(2, 50)
    base = CubicBaseline(ratio=3)
    assert count_parameters(base) == 0
    assert torch.equal(base(lr), CubicUpsample(3)(lr))


def test_mismatched_lists_are_rejected():
    with pytest.raises(ValueError, match="equal length"):
        AudioUNet(ratio=4, filters=[8, 16], kernels=[9])
