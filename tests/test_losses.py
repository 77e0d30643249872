"""Losses: the waveform ones, the multi-resolution STFT loss added to them, and weighted sums."""

from __future__ import annotations

import math

import pytest
import torch
from auraloss.freq import MultiResolutionSTFTLoss
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from audio_superres.checkpoint import instantiate_trusted
from audio_superres.losses import (
    APBWELoss,
    L1Loss,
    MRSTFTLoss,
    MSELoss,
    RMSELoss,
    WeightedSum,
    spectrum_stfts,
    takes_spectrum,
)

from .conftest import CONF_DIR


@pytest.fixture
def signals() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    t = torch.arange(4096) / 16000
    target = torch.sin(2 * math.pi * 440 * t) + 0.1 * torch.randn(2, 4096, generator=g)
    return target + 0.05 * torch.randn(2, 4096, generator=g), target


def test_waveform_losses():
    pred, target = torch.zeros(2, 8), torch.full((2, 8), 0.5)
    assert torch.isclose(RMSELoss(eps=0.0)(pred, target), torch.tensor(0.5))
    assert torch.isclose(L1Loss()(pred, target), torch.tensor(0.5))
    assert torch.isclose(MSELoss()(pred, target), torch.tensor(0.25))


@pytest.mark.parametrize("waveform", ["l1", "mse"])
def test_mrstft_is_zero_on_identical_signals(signals, waveform):
    _, target = signals
    assert MRSTFTLoss(waveform=waveform)(target.clone(), target) == 0
    assert MRSTFTLoss(waveform_weight=0.0)(target.clone(), target) == 0
    # rmse keeps its sqrt(1e-6) floor, the only non-zero part
    assert MRSTFTLoss(waveform="rmse")(target.clone(), target) == pytest.approx(1e-3, rel=1e-3)


def test_mrstft_is_positive_and_differentiable(signals):
    pred, target = signals
    pred = pred.clone().requires_grad_(True)
    loss_fn = MRSTFTLoss()
    loss = loss_fn(pred, target)
    assert loss > 0 and loss_fn.spectral(pred, target) > 0
    loss.backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_mrstft_weights_and_terms(signals):
    pred, target = signals
    sizes = dict(fft_sizes=[256, 512], hop_sizes=[64, 128], win_lengths=[256, 512])
    stft_only = MRSTFTLoss(waveform_weight=0.0, stft_weight=1.0, **sizes)(pred, target)
    reference = MultiResolutionSTFTLoss(**sizes)(pred.unsqueeze(1), target.unsqueeze(1))
    assert torch.isclose(stft_only, reference)
    wave_only = MRSTFTLoss(waveform="l1", stft_weight=0.0, **sizes)(pred, target)
    assert torch.isclose(wave_only, L1Loss()(pred, target))
    both = MRSTFTLoss(waveform="l1", waveform_weight=2.0, stft_weight=0.5, **sizes)(pred, target)
    assert torch.isclose(both, 2 * wave_only + 0.5 * stft_only)


def test_mrstft_sees_a_missing_high_band_more_than_the_waveform_loss(signals):
    _, target = signals
    spectrum = torch.fft.rfft(target)
    spectrum[..., spectrum.shape[-1] // 4 :] = 0  # drop everything above 2 kHz
    lowpassed = torch.fft.irfft(spectrum, n=target.shape[-1])
    loss_fn = MRSTFTLoss()
    assert loss_fn.spectral(lowpassed, target) > 5 * RMSELoss()(lowpassed, target)


def test_mrstft_takes_short_and_batched_signals():
    x, y = torch.randn(3, 64), torch.randn(3, 64)
    assert MRSTFTLoss()(x, y) > 0 and MRSTFTLoss()(x, x) < 1e-2


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(waveform="l2"),
        dict(fft_sizes=[512], hop_sizes=[128, 256], win_lengths=[512]),
        dict(fft_sizes=[256], hop_sizes=[128], win_lengths=[512]),
    ],
)
def test_mrstft_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        MRSTFTLoss(**kwargs)


def test_mrstft_config_instantiates_with_overrides(signals):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "train", overrides=["loss=mrstft", "loss.waveform=l1", "loss.stft_weight=0.25"]
        )
    GlobalHydra.instance().clear()
    loss_fn = instantiate(cfg.loss)
    assert isinstance(loss_fn, MRSTFTLoss)
    assert loss_fn.waveform == "l1" and loss_fn.stft_weight == 0.25
    pred, target = signals
    assert loss_fn(target, target) == 0 and loss_fn(pred, target) > 0


class _Refuses(torch.nn.Module):
    """A loss that must not be computed."""

    def forward(self, pred, target):
        raise AssertionError("a term of weight 0 was computed")


def test_weighted_sum_is_the_weighted_sum_of_its_terms(signals):
    pred, target = signals
    mr, l1 = MRSTFTLoss(waveform_weight=0.0), L1Loss()
    loss = WeightedSum({"mrstft": {"weight": 3.0, "loss": mr}, "l1": {"loss": l1}})
    expected = 3.0 * mr(pred, target) + l1(pred, target)
    assert torch.allclose(loss(pred, target), expected)
    assert loss(target, target) == 0
    # a term of weight 0 is neither computed nor reported
    off = WeightedSum({"l1": {"weight": 2.0, "loss": l1}, "off": {"weight": 0, "loss": _Refuses()}})
    assert torch.allclose(off(pred, target), 2 * l1(pred, target))
    assert set(off.terms(pred, target)) == {"l1"}


def test_weighted_sum_reports_each_term_and_its_components(signals):
    pred, target = signals
    apbwe = APBWELoss()
    loss = WeightedSum(
        {"apbwe": {"weight": 1.0, "loss": apbwe}, "mrstft": {"weight": 0.5, "loss": MRSTFTLoss()}}
    )
    terms = loss.terms(pred, target)
    assert torch.allclose(terms["apbwe"], apbwe(pred, target))
    for name, value in apbwe.terms(pred, target).items():
        assert torch.allclose(terms[f"apbwe/{name}"], value)
    assert "mrstft" in terms and not any(k.startswith("mrstft/") for k in terms)
    pred = pred.clone().requires_grad_(True)
    loss(pred, target).backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "terms",
    [{}, {"a": L1Loss()}, {"a": {"weight": 1.0}}, {"a": {"loss": L1Loss(), "wieght": 2.0}}],
)
def test_weighted_sum_rejects_malformed_terms(terms):
    """(and, below, one whose every weight is 0: nothing to train on)"""
    with pytest.raises(ValueError):
        WeightedSum(terms)


def test_apbwe_mrstft_config_adds_a_term_to_the_apbwe_loss(signals):
    """loss=apbwe_mrstft builds (through the checkpoint allow-list too) and its mrstft weight is
    one override: at 0 it is loss=apbwe."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        both = compose("train", overrides=["loss=apbwe_mrstft"])
        off = compose("train", overrides=["loss=apbwe_mrstft", "loss.terms.mrstft.weight=0"])
        apbwe = compose("train", overrides=["loss=apbwe"])
    GlobalHydra.instance().clear()
    pred, target = signals
    both_fn = instantiate_trusted(both.loss, "loss")
    assert isinstance(both_fn.losses["apbwe"], APBWELoss)
    assert both_fn.weights == {"apbwe": 1.0, "mrstft": both.loss.terms.mrstft.weight}
    reference = instantiate(apbwe.loss)(pred, target)
    assert torch.allclose(instantiate(off.loss)(pred, target), reference)
    assert both_fn(pred, target) > reference


def test_weighted_sum_rejects_all_zero_weights():
    with pytest.raises(ValueError, match="weight 0"):
        WeightedSum({"a": {"weight": 0, "loss": L1Loss()}, "b": {"weight": 0.0, "loss": L1Loss()}})


def test_weighted_sum_hands_the_generator_spectrum_to_the_terms_that_take_it():
    """A generator's own spectrum reaches the APBWE term (its consistency term goes live) and
    not the waveform-only term; `takes_spectrum` and `spectrum_stfts` see through the sum."""
    from audio_superres.dsp.amplitude_phase import AmplitudePhaseSTFT

    g = torch.Generator().manual_seed(1)
    target, pred = torch.randn(2, 2048, generator=g), torch.randn(2, 2048, generator=g)
    log_amp, phase = AmplitudePhaseSTFT(128, 16, 64)(pred)
    spectrum = (log_amp + 0.3, phase + 0.5)  # not the STFT of pred: an inconsistent spectrum
    apbwe, l1 = APBWELoss(128, 16, 64), L1Loss()
    loss = WeightedSum({"apbwe": {"loss": apbwe}, "l1": {"weight": 2.0, "loss": l1}})
    expected = apbwe(pred, target, pred_spectrum=spectrum) + 2.0 * l1(pred, target)
    assert torch.allclose(loss(pred, target, pred_spectrum=spectrum), expected)
    assert not torch.allclose(loss(pred, target), expected, rtol=1e-3)
    terms = loss.terms(pred, target, pred_spectrum=spectrum)
    assert terms["apbwe/consistency"] > 0
    assert torch.allclose(terms["apbwe"], apbwe(pred, target, pred_spectrum=spectrum))
    assert takes_spectrum(loss) and takes_spectrum(apbwe) and not takes_spectrum(l1)
    waveform_only = WeightedSum({"apbwe": {"weight": 0, "loss": apbwe}, "l1": {"loss": l1}})
    assert not takes_spectrum(waveform_only)
    assert spectrum_stfts(loss, "loss") == {"loss/apbwe": apbwe.stft}
    assert spectrum_stfts(waveform_only, "loss") == {}
