"""AP-BWE's training loss (`losses.APBWELoss`) and the anti-wrapping function."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from audio_superres.dsp.amplitude_phase import (
    AmplitudePhaseSTFT,
    anti_wrap,
    hann_stft,
    log_amplitude_phase,
    polar_spectrum,
)
from audio_superres.losses import APBWELoss, apbwe_spectral_terms
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


def _spectral_terms_by_definition(amp, pha, amp_t, pha_t):
    """The five spectral terms written as the class docstring defines them, through autograd."""
    def wrap(d):  # a mean over no differences (one frame) is no loss
        return torch.atan2(torch.sin(d), torch.cos(d)).abs().mean() if d.numel() else 0 * d.sum()

    com, com_t = torch.polar(amp.exp(), pha), torch.polar(amp_t.exp(), pha_t)
    return torch.stack([
        (amp - amp_t).pow(2).mean(),
        wrap(pha_t - pha),
        wrap(pha_t.diff(dim=1) - pha.diff(dim=1)),
        wrap(pha_t.diff(dim=2) - pha.diff(dim=2)),
        (com - com_t).abs().pow(2).mean() / 2,
    ])


@pytest.mark.parametrize("frames", [1, 2, 9])
def test_hand_written_backward_of_the_spectral_terms_equals_autograd(frames):
    """The loss's closed-form backward (the fast path of every AP-BWE training step) gives the
    values and gradients of autograd through the definitions, in float64, for any weights."""
    g = torch.Generator().manual_seed(frames)
    shape = (2, 7, frames)
    amp_t, pha_t = torch.randn(shape, generator=g, dtype=torch.float64), \
        4 * torch.randn(shape, generator=g, dtype=torch.float64)
    amp0 = amp_t + 0.5 * torch.randn(shape, generator=g, dtype=torch.float64)
    pha0 = pha_t + 3 * torch.randn(shape, generator=g, dtype=torch.float64)
    weights = torch.rand(5, generator=g, dtype=torch.float64) + 0.1
    results = []
    for fn in (apbwe_spectral_terms, _spectral_terms_by_definition):
        amp, pha = amp0.clone().requires_grad_(), pha0.clone().requires_grad_()
        values = fn(amp, pha, amp_t, pha_t)
        (weights * values).sum().backward()
        results.append((values.detach(), amp.grad, pha.grad))
    for fast, reference in zip(*results, strict=True):
        assert torch.allclose(fast, reference, rtol=1e-10, atol=1e-12)
    assert results[0][2].abs().sum() > 0  # the phase terms do pull on the phase


def test_closed_form_backward_of_log_amplitude_and_phase():
    """`log_amplitude_phase` passes gradcheck (complex128) and, like autograd through abs and
    angle, sends no gradient through an exactly zero bin."""
    g = torch.Generator().manual_seed(3)
    spec = torch.complex(torch.randn(3, 5, generator=g, dtype=torch.float64),
                         torch.randn(3, 5, generator=g, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: log_amplitude_phase(x, 1e-4), (spec,))
    zero = torch.zeros(2, dtype=torch.complex128, requires_grad=True)
    amp, pha = log_amplitude_phase(zero, 1e-4)
    (amp.sum() + pha.sum()).backward()
    assert torch.equal(zero.grad, torch.zeros_like(zero.grad))
    reference = torch.zeros(2, dtype=torch.complex128, requires_grad=True)
    (torch.log(reference.abs() + 1e-4).sum() + torch.angle(reference).sum()).backward()
    assert torch.equal(zero.grad, reference.grad)


@pytest.mark.parametrize(
    ("n", "n_fft", "hop", "win"), [(53, 32, 5, 12), (40, 16, 4, 16), (30, 15, 3, 8)]
)
def test_stft_backward_equals_autograds(n, n_fft, hop, win):
    """`hann_stft`'s lean backward (irfft + fold of the window's samples) passes gradcheck and
    gives torch.stft's autograd gradient (even and odd n_fft, window shorter than or equal to the
    frame)."""
    g = torch.Generator().manual_seed(n)
    window = torch.hann_window(win, dtype=torch.float64)
    wave = torch.randn(2, n, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x: hann_stft(x, n_fft, hop, win, window), (wave,), fast_mode=True
    )
    frames = hann_stft(wave, n_fft, hop, win, window).shape[-1]
    weights = torch.randn(2, n_fft // 2 + 1, frames, 2, generator=g, dtype=torch.float64)
    grads = []
    for fn in (hann_stft, None):
        x = wave.detach().clone().requires_grad_()
        spec = fn(x, n_fft, hop, win, window) if fn else torch.stft(
            x, n_fft, hop, win, window=window, center=True, pad_mode="constant",
            return_complex=True)
        (torch.view_as_real(spec) * weights).sum().backward()
        grads.append(x.grad)
    assert torch.allclose(*grads, rtol=1e-10, atol=1e-12)


def test_polar_spectrum_inverts_log_amplitude_phase_with_autograds_gradient():
    """The synthesis side (`InverseAmplitudePhaseSTFT`): `(exp(A) - eps) e^{iP}` undoes
    `log_amplitude_phase` and its closed-form backward passes gradcheck."""
    g = torch.Generator().manual_seed(5)
    spec = torch.complex(torch.randn(2, 9, 4, generator=g, dtype=torch.float64),
                         torch.randn(2, 9, 4, generator=g, dtype=torch.float64))
    amp, pha = log_amplitude_phase(spec, 1e-4)
    assert torch.allclose(polar_spectrum(amp, pha, 1e-4), spec, atol=1e-12)
    inputs = (amp.clone().requires_grad_(), pha.clone().requires_grad_())
    assert torch.autograd.gradcheck(lambda a, p: polar_spectrum(a, p, 1e-4), inputs)


def test_closed_form_functions_take_any_gradient_autograd_hands_them():
    """A conjugated upstream gradient reaches `polar_spectrum` as a lazy conjugate, and a learnt
    window must get its gradient from `hann_stft`: both as autograd through the plain ops."""
    g = torch.Generator().manual_seed(7)
    amp, pha = torch.randn(2, 5, 3, generator=g), torch.randn(2, 5, 3, generator=g)
    w = torch.randn(2, 5, 3, generator=g)
    grads = []
    for fn in (polar_spectrum, lambda a, p, eps: torch.polar(a.exp(), p) - eps * torch.polar(
            torch.ones_like(a), p)):
        a, p = amp.clone().requires_grad_(), pha.clone().requires_grad_()
        (fn(a, p, 1e-4).conj() * w).imag.sum().backward()
        grads.append((a.grad, p.grad))
    for fast, reference in zip(*grads, strict=True):
        assert torch.allclose(fast, reference, atol=1e-5)
    window = torch.hann_window(16).requires_grad_()
    hann_stft(torch.randn(2, 64, requires_grad=True), 32, 4, 16, window).abs().sum().backward()
    assert window.grad is not None and window.grad.abs().sum() > 0
