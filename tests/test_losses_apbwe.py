"""AP-BWE's training loss (`losses.APBWELoss`) and the anti-wrapping function."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from audio_superres.dsp.amplitude_phase import AmplitudePhaseSTFT, anti_wrap
from audio_superres.losses import APBWELoss
from audio_superres.models import APBWE

TERMS = {"amplitude", "phase_ip", "phase_gd", "phase_iaf", "complex", "consistency", "waveform"}


def test_anti_wrapping_matches_its_definition():
    x = torch.linspace(-20.0, 20.0, 4001, dtype=torch.float64)
    # the distance from x to the nearest multiple of 2 pi, written independently
    expected = np.abs(np.remainder(x.numpy() + np.pi, 2 * np.pi) - np.pi)
    assert np.allclose(anti_wrap(x).numpy(), expected, atol=1e-12)
    k = torch.arange(-3, 4, dtype=torch.float64)
    assert torch.allclose(anti_wrap(2 * math.pi * k + 0.3), torch.full((7,), 0.3, dtype=x.dtype))
    assert anti_wrap(x).max() <= math.pi + 1e-12


def test_zero_for_identical_inputs_positive_otherwise():
    torch.manual_seed(0)
    loss = APBWELoss(waveform_weight=1.0)
    y = torch.randn(2, 8000)
    terms = loss.terms(y, y)
    assert set(terms) == TERMS
    assert all(v == 0 for v in terms.values())
    assert loss(y, y) == 0
    other = loss.terms(y + 0.1 * torch.randn_like(y), y)
    assert all(other[name] > 0 for name in TERMS - {"consistency"})
    assert loss(y + 0.1 * torch.randn_like(y), y) > 0


def test_total_uses_the_papers_weights():
    torch.manual_seed(0)
    loss = APBWELoss()
    pred, target = torch.randn(2, 4000), torch.randn(2, 4000)
    t = loss.terms(pred, target)
    expected = (
        45 * t["amplitude"]
        + 100 * (t["phase_ip"] + t["phase_gd"] + t["phase_iaf"])
        + 90 * t["complex"]
        + 90 * t["consistency"]
    )
    assert torch.allclose(loss(pred, target), expected)
    with_waveform = APBWELoss(waveform_weight=2.0)(pred, target)
    assert torch.allclose(with_waveform, expected + 2 * t["waveform"])


def test_terms_follow_their_definitions():
    torch.manual_seed(0)
    pred, target = torch.randn(1, 2000), torch.randn(1, 2000)
    loss = APBWELoss(n_fft=256, hop_length=32, win_length=128)
    stft = AmplitudePhaseSTFT(256, 32, 128)
    (a_p, p_p), (a_t, p_t) = stft(pred), stft(target)
    t = loss.terms(pred, target)
    wrap = lambda d: torch.atan2(torch.sin(d), torch.cos(d)).abs()  # noqa: E731
    assert torch.allclose(t["amplitude"], (a_p - a_t).pow(2).mean())
    assert torch.allclose(t["phase_ip"], wrap(p_p - p_t).mean(), atol=1e-6)
    assert torch.allclose(t["phase_gd"], wrap(p_p.diff(dim=1) - p_t.diff(dim=1)).mean(), atol=1e-6)
    assert torch.allclose(t["phase_iaf"], wrap(p_p.diff(dim=2) - p_t.diff(dim=2)).mean(), atol=1e-6)
    c_p, c_t = torch.polar(a_p.exp(), p_p), torch.polar(a_t.exp(), p_t)
    assert torch.allclose(t["complex"], (c_p - c_t).abs().pow(2).mean() / 2, rtol=1e-5)


def test_gradients_flow_to_the_prediction_and_a_model():
    torch.manual_seed(0)
    loss = APBWELoss(waveform_weight=1.0)
    target = torch.randn(2, 4000)
    pred = (target + 0.1 * torch.randn_like(target)).requires_grad_()
    loss(pred, target).backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    model = APBWE(4, channels=8, layers=1)
    loss(model(torch.randn(2, 1000)), target).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_silent_prediction_has_finite_gradients():
    pred = torch.zeros(1, 3000, requires_grad=True)
    APBWELoss()(pred, torch.randn(1, 3000)).backward()
    assert torch.isfinite(pred.grad).all()


def test_consistency_term_on_the_generators_own_spectrum():
    torch.manual_seed(0)
    model = APBWE(4, channels=8, layers=1)
    loss = APBWELoss()
    lr, target = torch.randn(2, 1000), torch.randn(2, 4000)
    log_amp, phase = model.predict_spectrum(lr)
    wave = model.istft(log_amp, phase, 4000)
    # a random spectrum is not the STFT of any signal: re-analysing its iSTFT changes it
    t = loss.terms(wave, target, (log_amp, phase))
    assert t["consistency"] > 0
    # the STFT of a waveform is consistent: its own consistency term is zero
    consistent = AmplitudePhaseSTFT(1024, 80, 320)(wave)
    assert loss.terms(wave, target, consistent)["consistency"] < 1e-8
    (90 * t["consistency"] + t["amplitude"]).backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("n", [1, 3, 79, 80, 513])
def test_any_length(n):
    loss = APBWELoss()
    value = loss(torch.randn(2, n), torch.randn(2, n))
    assert torch.isfinite(value) and value > 0


def test_mismatched_shapes_and_bad_options_are_rejected():
    with pytest.raises(ValueError, match="differ"):
        APBWELoss()(torch.randn(1, 100), torch.randn(1, 101))
    with pytest.raises(ValueError, match="waveform loss"):
        APBWELoss(waveform="l3")
