"""TFiLMUNet: the U-Net plus Temporal FiLM (REFERENCE section 2, Birnbaum et al. 2019)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from audio_superres.models import AudioUNet, TFiLM, TFiLMUNet
from audio_superres.models.layers import count_parameters
from audio_superres.models.tfilm import PooledDownBlock, tfilm_block_sizes

UNET = dict(filters=[8, 16, 16], kernels=[9, 7, 5], bottleneck_filters=16, bottleneck_kernel=5)


def hold_modulation_at_one(model: TFiLMUNet, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every TFiLM layer scale by exactly 1."""
    for layer in model.modules():
        if isinstance(layer, TFiLM):
            ones = (
                lambda x, bs=layer.block_size: x.new_ones(  # noqa: E731
                    *x.shape[:2], -(-x.shape[-1] // bs)
                )
            )
            monkeypatch.setattr(layer, "block_scales", ones)


def lstm_params(channels: int) -> int:
    return 4 * (2 * channels * channels + 2 * channels)  # W_ih, W_hh, b_ih, b_hh for 4 gates


def test_tfilm_at_one_is_the_identity(monkeypatch):
    layer = TFiLM(6, block_size=5)
    x = torch.randn(2, 6, 23)
    hold_modulation_at_one(layer, monkeypatch)
    assert torch.equal(layer(x), x)


def test_tfilm_scales_each_block_by_an_lstm_over_max_pooled_blocks():
    torch.manual_seed(0)
    layer = TFiLM(4, block_size=5)
    x = torch.randn(2, 4, 23)  # 4 full blocks and a partial one of 3 samples
    pooled = torch.stack(
        [x[..., i : i + 5].amax(dim=-1) for i in range(0, 23, 5)], dim=1
    )  # (B, 5 blocks, C), the last over its 3 real samples
    expected_scales, _ = layer.lstm(pooled)
    out = layer(x)
    for b, start in enumerate(range(0, 23, 5)):
        block = slice(start, start + 5)
        assert torch.allclose(out[..., block], x[..., block] * expected_scales[:, b, :, None])


def test_tfilm_down_block_at_one_equals_the_plain_pooled_block(monkeypatch):
    torch.manual_seed(0)
    block, layer = PooledDownBlock(3, 8, 9), TFiLM(8, block_size=4)
    hold_modulation_at_one(layer, monkeypatch)
    x = torch.randn(2, 3, 64)
    conv = block.conv
    by_hand = F.leaky_relu(F.max_pool1d(F.conv1d(x, conv.weight, conv.bias, padding=4), 2), 0.2)
    assert torch.equal(layer(block(x)), by_hand)


def test_tfilm_unet_at_one_equals_the_plain_unet(monkeypatch):
    """pool=False is AudioUNet plus TFiLM layers: with every scale held at 1 it is the U-Net."""
    torch.manual_seed(0)
    unet = AudioUNet(ratio=4, **UNET).eval()
    tfilm = TFiLMUNet(ratio=4, block_sizes=4, pool=False, **UNET).eval()
    result = tfilm.load_state_dict(unet.state_dict(), strict=False)
    assert not result.unexpected_keys
    assert result.missing_keys and all(k.startswith("tfilm_") for k in result.missing_keys)
    lr = torch.randn(2, 99)
    assert not torch.equal(tfilm(lr), unet(lr))  # the LSTMs do modulate
    hold_modulation_at_one(tfilm, monkeypatch)
    assert torch.equal(tfilm(lr), unet(lr))


def test_tfilm_is_placed_after_every_down_bottleneck_and_up_block():
    model = TFiLMUNet(ratio=4, block_sizes=8, **UNET).eval()
    seen = []
    for layer in model.modules():
        if isinstance(layer, TFiLM):
            layer.register_forward_hook(lambda m, a, o: seen.append((m.channels, a[0].shape[-1])))
    model(torch.randn(1, 64))  # HR 256: levels at 128, 64, 32, bottleneck 16
    assert seen == [(8, 128), (16, 64), (16, 32), (16, 16), (16, 32), (16, 64), (8, 128)]


def test_default_block_sizes_keep_the_same_number_of_blocks_per_level():
    assert tfilm_block_sizes(128, 4) == [128, 64, 32, 16, 8]
    assert tfilm_block_sizes(4, 4) == [4, 2, 1, 1, 1]
    assert tfilm_block_sizes([5, 5, 5], 2) == [5, 5, 5]
    model = TFiLMUNet(ratio=4, block_sizes=32, **UNET).eval()
    blocks = []
    for layer in model.modules():
        if isinstance(layer, TFiLM):
            layer.register_forward_hook(
                lambda m, a, o: blocks.append(-(-a[0].shape[-1] // m.block_size))
            )
    model(torch.randn(1, 512))  # HR 2048: level 0 has 1024 samples in blocks of 32
    assert blocks == [32] * 7


@pytest.mark.parametrize("bad", [[8, 4], [8, 4, 0, 1]])
def test_bad_block_sizes_are_rejected(bad):
    with pytest.raises(ValueError, match="block_sizes"):
        TFiLMUNet(ratio=2, block_sizes=bad, **UNET)


def test_architecture_follows_the_2019_code():
    with torch.device("meta"):
        model = TFiLMUNet(ratio=4)
    blocks = [*model.down, model.bottleneck]
    assert all(isinstance(b, PooledDownBlock) and b.conv.stride[0] == 1 for b in blocks)
    assert [b.conv.out_channels for b in model.down] == [128, 384, 512, 512]
    assert [layer.lstm.hidden_size for layer in model.tfilm_down] == [128, 384, 512, 512]
    assert [layer.lstm.hidden_size for layer in model.tfilm_up] == [512, 512, 384, 128]
    assert [layer.block_size for layer in model.tfilm_up] == [16, 32, 64, 128]
    assert model.tfilm_bottleneck.block_size == 8
    assert model.bottleneck.dropout.p == 0.5 and [b.dropout.p for b in model.up] == [0.5] * 4


def test_paper_size_parameter_count():
    """The paper U-Net's 70,977,154 plus one LSTM (hidden = channels) per modulated block."""
    with torch.device("meta"):
        model = TFiLMUNet(ratio=4)
    channels = [128, 384, 512, 512] + [512] + [512, 512, 384, 128]
    expected = 70_977_154 + sum(lstm_params(c) for c in channels)
    assert count_parameters(model) == expected == 84_113_026


def test_dilation_keeps_same_length():
    model = TFiLMUNet(ratio=2, dilation=2, block_sizes=8, **UNET).eval()
    assert model.down[0].conv.dilation == (2,) and model.up[0].conv.dilation == (2,)
    assert model(torch.randn(1, 50)).shape == (1, 100)
