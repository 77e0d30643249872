"""AP-BWE generator (`models.apbwe.APBWE`): size, shapes, residual start, chunks, context."""

from __future__ import annotations

import io
import math

import pytest
import torch

from audio_superres.dsp.amplitude_phase import AmplitudePhaseSTFT, InverseAmplitudePhaseSTFT
from audio_superres.dsp.cubic import CubicUpsample
from audio_superres.inference import super_resolve
from audio_superres.models import APBWE
from audio_superres.models.layers import count_parameters
from audio_superres.models.summary import model_summary

# small STFT and network: every property below holds at any size
TINY = dict(channels=16, layers=2, n_fft=128, hop_length=16, win_length=64)


def paper_parameter_count(n_fft: int, channels: int, layers: int, kernel: int = 7) -> int:
    """AP-BWE's generator counted by hand from its configuration, layer by layer (with biases)."""
    bins, c = n_fft // 2 + 1, channels
    conv_in = bins * c * kernel + c  # Conv1d(bins -> C, 7), one per stream
    norm = 2 * c  # LayerNorm weight + bias
    block = (
        (c * kernel + c)  # depthwise Conv1d(C, C, 7, groups=C)
        + norm
        + (c * 3 * c + 3 * c)  # Linear(C, 3C)
        + (3 * c * c + c)  # Linear(3C, C)
        + c  # layer scale
    )
    streams = 2 * (conv_in + norm + layers * block + norm)
    outputs = 3 * (c * bins + bins)  # amplitude; phase real and imaginary parts
    return streams + outputs


def test_paper_size_parameter_count():
    by_hand = paper_parameter_count(1024, 512, 8)
    assert by_hand == 29_760_515  # "~29.8M counted from its configs" (REFERENCE section 2)
    with torch.device("meta"):
        model = APBWE(ratio=4)
    assert count_parameters(model) == by_hand
    assert (model.n_fft, model.hop_length, model.win_length) == (1024, 80, 320)
    assert len(model.amplitude_blocks) == len(model.phase_blocks) == 8


def test_small_config_parameter_count():
    with torch.device("meta"):
        model = APBWE(ratio=4, channels=128, layers=4)
    assert count_parameters(model) == paper_parameter_count(1024, 128, 4)


@pytest.mark.parametrize("ratio", [2, 3, 4, 6, 8])
def test_any_length_any_ratio(ratio):
    torch.manual_seed(0)
    model = APBWE(ratio, **TINY).eval()
    with torch.no_grad():
        for m in (1, 2, 3, 5, 7, 13, 97, 1009, 3001):
            out = model(torch.randn(2, m))
            assert out.shape == (2, m * ratio), (ratio, m)
            assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_paper_stft_sizes_on_short_and_long_inputs():
    model = APBWE(4, channels=8, layers=1).eval()  # n_fft 1024, hop 80, window 320
    with torch.no_grad():
        for m in (1, 2, 11, 127, 4001):
            out = model(torch.randn(1, m))
            assert out.shape == (1, 4 * m) and torch.isfinite(out).all()


def test_stft_pair_is_an_exact_round_trip():
    x = torch.randn(3, 1001)
    for n_fft, hop, win in ((1024, 80, 320), (128, 16, 64)):
        log_amp, phase = AmplitudePhaseSTFT(n_fft, hop, win)(x)
        assert log_amp.shape == (3, n_fft // 2 + 1, 1001 // hop + 1)
        y = InverseAmplitudePhaseSTFT(n_fft, hop, win)(log_amp, phase, 1001)
        assert torch.allclose(y, x, atol=1e-5)


@pytest.mark.parametrize("ratio", [2, 3, 4])
def test_residual_model_starts_at_its_cubic_input(ratio):
    torch.manual_seed(0)
    lr = torch.randn(2, 1500)
    cubic = CubicUpsample(ratio)(lr)
    with torch.no_grad():
        out = APBWE(ratio, residual=True, **TINY).eval()(lr)
        paper = APBWE(ratio, residual=False, **TINY).eval()(lr)
    assert (out - cubic).abs().max() < 1e-5 * cubic.abs().max()
    # the paper's start (phase from scratch) is far from the input: the check can fail
    assert (paper - cubic).pow(2).mean() > 0.1 * cubic.pow(2).mean()


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = APBWE(4, **TINY).train()
    lr, hr = torch.randn(2, 300), torch.randn(2, 1200)
    (model(lr) - hr).pow(2).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_forward_with_spectrum_gives_the_waveform_and_the_spectrum_it_came_from():
    torch.manual_seed(0)
    model = APBWE(4, residual=False, **TINY).eval()
    lr = torch.randn(2, 300)
    wave, (log_amp, phase) = model.forward_with_spectrum(lr)
    assert torch.equal(wave, model(lr))
    expected = model.predict_spectrum(lr)
    assert torch.equal(log_amp, expected[0]) and torch.equal(phase, expected[1])
    resynthesised = InverseAmplitudePhaseSTFT(128, 16, 64)(log_amp, phase, 1200)
    assert torch.allclose(wave, resynthesised)


def test_residual_model_trains_from_its_zero_output_layers():
    torch.manual_seed(0)
    model = APBWE(4, residual=True, **TINY).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    lr, hr = torch.randn(2, 300), torch.randn(2, 1200)
    for _ in range(2):  # step 1 moves the zero output layers, step 2 reaches everything
        opt.zero_grad()
        (model(lr) - hr).pow(2).mean().backward()
        opt.step()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_receptive_field_is_within_context():
    """Perturbing one LR sample just beyond `context` leaves the output sample unchanged; the
    radius is tight enough that a perturbation well inside it does change it."""
    torch.manual_seed(0)
    ratio = 4
    model = APBWE(ratio, **TINY).eval()
    context = model.context
    m = 4 * context
    lr = torch.randn(1, m)
    t = 2 * context  # LR position of the output sample looked at
    with torch.no_grad():
        base = model(lr)[0, t * ratio]
        far, near = lr.clone(), lr.clone()
        far[0, t + context + 1] += 1.0
        near[0, t + (context - 16) // 2] += 1.0
        assert torch.allclose(model(far)[0, t * ratio], base, atol=1e-6)
        assert not torch.allclose(model(near)[0, t * ratio], base, atol=1e-3)


def test_context_and_alignment_follow_the_stft_and_the_blocks():
    model = APBWE(4, **TINY)
    assert model.chunk_alignment == 16
    frames = 7 // 2 + 2 * (7 // 2)
    assert model.context == math.ceil((64 + frames * 16) / 4) + 1 + 16
    paper = APBWE(4, channels=8, layers=8)
    assert paper.context == math.ceil((320 + (3 + 8 * 3) * 80) / 4) + 1 + 16


@pytest.mark.parametrize("ratio", [2, 3])
def test_chunked_inference_equals_whole_file(ratio):
    torch.manual_seed(0)
    model = APBWE(ratio, **TINY).eval()
    lr = torch.randn(6000)
    with torch.no_grad():
        whole = model(lr[None])[0]
    overlap = 4 * model.context  # its outer quarters are discarded context
    # chunk > 2 x overlap: only neighbouring chunks overlap (the crossfade's assumption)
    kw = dict(chunk=2 * overlap + 301, overlap=overlap, batch_size=3, device="cpu")
    chunked = super_resolve(model, lr, ratio, **kw)
    assert chunked.shape == whole.shape
    assert torch.allclose(chunked, whole, atol=1e-4 * whole.abs().max())
    # chunk starts off the hop grid see other frames: the alignment is needed, the check can fail
    misaligned = super_resolve(model, lr, ratio, align_hr=1, **kw)
    assert not torch.allclose(misaligned, whole, atol=1e-3 * whole.abs().max())


def test_save_load_round_trip_gives_identical_output():
    torch.manual_seed(0)
    model = APBWE(3, **TINY).eval()
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    torch.manual_seed(1)
    other = APBWE(3, **TINY).eval()
    state = torch.load(buf, weights_only=True)
    assert not any("window" in key for key in state)  # STFT windows are rebuilt, not stored
    other.load_state_dict(state)
    lr = torch.randn(2, 301)
    with torch.no_grad():
        assert torch.equal(model(lr), other(lr))


def test_stft_sizes_scale_with_the_sample_rate_when_asked():
    fixed = APBWE(6, sample_rate=48000, channels=8, layers=1)
    assert (fixed.n_fft, fixed.hop_length, fixed.win_length) == (1024, 80, 320)  # the paper
    scaled = APBWE(6, sample_rate=48000, stft_reference_rate=16000, channels=8, layers=1)
    assert (scaled.n_fft, scaled.hop_length, scaled.win_length) == (3072, 240, 960)
    assert scaled.amplitude_in.in_channels == 3072 // 2 + 1


def test_bad_stft_sizes_are_rejected():
    with pytest.raises(ValueError, match="hop_length"):
        APBWE(4, n_fft=256, hop_length=128, win_length=64)


def test_summary_counts_the_layers_by_hand():
    model = APBWE(4, **TINY)
    s = model_summary(model, ratio=4, sample_rate=16000)
    c, bins, k, layers = 16, 65, 7, 2
    frames = 16000 // 16 + 1
    per_frame = {
        "Conv1d": 2 * bins * c * k + 2 * layers * c * k,
        "Linear": 2 * layers * 6 * c * c + 3 * c * bins,
        # blocks', input and output norms, 2 per element
        "LayerNorm": 2 * (2 * layers * c + 2 * c) + 2 * 2 * c,
    }
    for layer, macs in per_frame.items():
        assert s["macs_by_layer"][layer] == frames * macs, layer
    fft = frames * (128 + 2.5 * 128 * 7)  # window + 5 N log2 N / 2 per frame, N = 128
    assert s["macs_by_layer"]["AmplitudePhaseSTFT"] == pytest.approx(fft, abs=1)
    assert s["macs_by_layer"]["InverseAmplitudePhaseSTFT"] == pytest.approx(fft, abs=1)


@pytest.mark.parametrize("name", ["apbwe", "apbwe_small"])
def test_configs_build_from_hydra(name):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    from audio_superres.runs import find_conf_dir

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(find_conf_dir()), version_base="1.3"):
        cfg = compose("train", overrides=[f"model={name}", "ratio=3", "sample_rate=24000"])
    with torch.device("meta"):
        model = instantiate(cfg.model)
    assert isinstance(model, APBWE) and model.ratio == 3 and model.sample_rate == 24000
    assert model.residual == (name == "apbwe_small")
