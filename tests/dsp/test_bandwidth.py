"""dsp.bandwidth: the effective-bandwidth estimate and the re-filter decision (issue 20 item 4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchaudio.functional as AF
from scipy import signal

from audio_superres.data.audio_io import read_audio
from audio_superres.dsp.bandwidth import (
    MARGIN_DB,
    SpectrumAccumulator,
    check_input,
    effective_bandwidth,
    expected_response,
    power_spectrum,
    refilter,
)
from audio_superres.dsp.blockwise import RefilteredReader
from audio_superres.dsp.lowpass import LowpassSpec, lowpass_sos, make_lowres

from ..conftest import SHARED, voiced_signal

RATIOS = (2, 3, 4, 8)


def band_limited_noise(rng: np.random.Generator, n: int, sr: float, cutoff_hz: float) -> np.ndarray:
    """White noise with nothing above `cutoff_hz` (an ideal low-pass, in the DFT domain)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    spec[np.fft.rfftfreq(n, 1 / sr) > cutoff_hz] = 0
    return np.fft.irfft(spec, n)


@pytest.mark.parametrize("sr", [4000, 16000, 44100])
@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.8, 0.95])
def test_bandwidth_of_band_limited_noise_is_within_2_percent_of_its_cutoff(sr, fraction):
    rng = np.random.default_rng(int(sr * fraction))
    cutoff = fraction * sr / 2
    x = band_limited_noise(rng, 3 * sr, sr, cutoff)
    assert abs(effective_bandwidth(x, sr) - cutoff) <= 0.02 * cutoff
    # the same through torch, several channels (their powers summed)
    stereo = torch.from_numpy(np.stack([x, band_limited_noise(rng, 3 * sr, sr, cutoff)]))
    assert abs(effective_bandwidth(stereo, sr) - cutoff) <= 0.02 * cutoff


def test_bandwidth_of_filtered_noise_follows_the_filter():
    """A real filter (elliptic, 80 dB stopband) instead of an ideal one: the same 2%."""
    rng = np.random.default_rng(3)
    for cutoff in (600.0, 1500.0, 3000.0):
        sos = signal.ellip(10, 0.05, 80, cutoff, fs=8000, output="sos")
        x = signal.sosfiltfilt(sos, rng.standard_normal(8000 * 4))
        assert abs(effective_bandwidth(x, 8000) - cutoff) <= 0.02 * cutoff


def test_silence_and_tiny_inputs_give_a_clear_result():
    for x in (np.zeros(5000), np.zeros(3), np.zeros(0), np.zeros((2, 4000))):
        assert effective_bandwidth(x, 4000) == 0.0
    check = check_input(np.zeros(8000), "chebyshev", 4, 4000)
    assert not check.refilter and check.reason.startswith("silent")
    assert check.bandwidth_hz == 0.0 and check.narrow
    assert "unchanged" in check.summary() and "nan" not in check.summary()
    short = check_input(np.random.default_rng(0).standard_normal(20), "chebyshev", 4, 4000)
    assert not short.refilter and short.reason.startswith("too short")


def test_streamed_spectrum_equals_whole_signal():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((7001, 2))
    acc = SpectrumAccumulator(4000)
    for a, b in [(0, 1), (1, 900), (900, 4000), (4000, 7001)]:
        acc.update(x[a:b])
    whole = power_spectrum(x.T, 4000)
    np.testing.assert_allclose(acc.result().power, whole.power, rtol=1e-12)
    assert acc.result().frames == 7001


def test_expected_response_of_no_filter_is_flat_and_of_chebyshev_falls():
    u = np.linspace(0, 1, 101)
    np.testing.assert_allclose(expected_response("none", 4, u), 4.0)
    cheb = 10 * np.log10(expected_response("chebyshev", 4, u))
    assert abs(cheb[50]) < 0.1 and cheb[-1] < cheb[90] - 15 < cheb[50] - 30


def speechlike() -> dict[str, np.ndarray]:
    """High-res (16 kHz) material: real VCTK speech, a speech-like synthetic voice, white noise."""
    rng = np.random.default_rng(5)
    out = {
        f"vctk{i}": read_audio(SHARED / "data" / "vctk_test_clips" / "hr" / f"clip{i}.wav")[0][0]
        for i in (1, 2, 5)
    }
    out["voiced"] = voiced_signal(rng, 2.0, 16000)
    out["noise"] = (0.1 * rng.standard_normal(32000)).astype(np.float32)
    return {k: v.astype(np.float64) for k, v in out.items()}


@pytest.fixture(scope="module")
def material() -> dict[str, np.ndarray]:
    return speechlike()


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize(
    "trained",
    ["chebyshev", "elliptic", "butterworth", LowpassSpec(kind="chebyshev", zero_phase=False)],
)
def test_matched_input_is_never_refiltered(material, ratio, trained):
    """Input made by make_lowres with the training filter passes (margin MARGIN_DB)."""
    for name, y in material.items():
        lr = make_lowres(torch.from_numpy(y)[None], ratio, trained)
        check = check_input(lr, trained, ratio, 16000 / ratio)
        assert not check.refilter, (name, check)
        assert check.excess_db < MARGIN_DB - 5, (name, check)  # with room to spare


def mismatched(y: np.ndarray, ratio: int) -> dict[str, np.ndarray]:
    t = torch.from_numpy(y)[None]
    return {
        "aliased": y[::ratio],
        "bessel": make_lowres(t, ratio, "bessel")[0].numpy(),
        "scipy resample_poly": signal.resample_poly(y, 1, ratio),
        "torchaudio resample": AF.resample(t, 16000, 16000 // ratio)[0].numpy(),
    }


@pytest.mark.parametrize("ratio", RATIOS)
def test_mismatched_input_is_refiltered(material, ratio):
    """No filter, Bessel and resampler-made input have a loud top band for a Chebyshev model."""
    for name, y in material.items():
        for how, lr in mismatched(y, ratio).items():
            check = check_input(lr, "chebyshev", ratio, 16000 / ratio)
            assert check.refilter, (name, how, check)
            assert check.excess_db > MARGIN_DB
            # re-filtered, it is within the training condition
            again = check_input(
                refilter(torch.from_numpy(lr), "chebyshev"), "chebyshev", ratio, 16000 / ratio
            )
            assert not again.refilter, (name, how, again)


def test_random_training_filter_uses_its_loosest_draw(material):
    y = material["vctk1"]
    # the default ranges reach cutoff 1.0 with order 2: the training input had its top band
    check = check_input(y[::4], "random", 4, 4000)
    assert not check.refilter and check.top_band is None
    # with Bessel draws at 0.8 the training input kept most of its top band: nothing to do
    bessel = LowpassSpec(kind="random", cutoff_range=(0.6, 0.8), order_range=(8, 10))
    assert not check_input(y[::4], bessel, 4, 4000).refilter
    # sharp families only, cutoffs 0.6-0.8: aliased input is re-filtered, the draws pass
    tight = LowpassSpec(
        kind="random",
        families=("chebyshev", "elliptic"),
        cutoff_range=(0.6, 0.8),
        order_range=(8, 10),
        seed=3,
    )
    assert check_input(y[::4], tight, 4, 4000).refilter
    t = torch.from_numpy(np.stack([y] * 4))
    for row in make_lowres(t, 4, tight, rng=np.random.default_rng(0)):
        assert not check_input(row, tight, 4, 4000).refilter
    assert refilter(torch.from_numpy(y[::4]), tight).shape == (len(y[::4]),)


def test_refilter_is_the_training_filter_at_the_low_res_rate():
    x = torch.from_numpy(np.random.default_rng(6).standard_normal((2, 3000)))
    sos = lowpass_sos(LowpassSpec(), 1)
    np.testing.assert_allclose(
        refilter(x, "chebyshev"), signal.sosfiltfilt(sos, x.numpy()), atol=1e-10
    )
    one_pass = LowpassSpec(zero_phase=False)
    np.testing.assert_allclose(refilter(x, one_pass), signal.sosfilt(sos, x.numpy()), atol=1e-10)
    assert refilter(x, "none") is x


class ArrayReader:
    def __init__(self, x: np.ndarray) -> None:
        self.x, self.pos = x, 0  # (n, C)
        self.frames, self.channels = x.shape

    def read(self, n: int, dtype: str = "float32", always_2d: bool = True) -> np.ndarray:
        out = self.x[self.pos : self.pos + n].astype(dtype)
        self.pos += len(out)
        return out


@pytest.mark.parametrize("lowpass", ["chebyshev", LowpassSpec(kind="bessel", zero_phase=False)])
def test_refiltered_reader_equals_whole_file_refilter(lowpass):
    x = np.random.default_rng(7).standard_normal((10_007, 2)).astype(np.float32)
    reader = RefilteredReader(ArrayReader(x), lowpass, block=1000)
    got = np.concatenate([reader.read(n) for n in (1, 2500, 5000, 10_000)])
    whole = refilter(torch.from_numpy(x.T.astype(np.float64)), lowpass).numpy().T
    assert got.shape == x.shape
    err = np.sum((got - whole) ** 2) / np.sum(whole**2)
    assert 10 * np.log10(1 / err) > 100


def test_always_refilters_whenever_there_is_a_filter_and_room_for_it(material):
    lr = make_lowres(torch.from_numpy(material["vctk1"])[None], 4, "chebyshev")
    assert not check_input(lr, "chebyshev", 4, 4000).refilter
    assert check_input(lr, "chebyshev", 4, 4000, always=True).refilter
    assert not check_input(lr, "none", 4, 4000, always=True).refilter  # nothing to apply
    assert not check_input(lr[..., :20], "chebyshev", 4, 4000, always=True).refilter  # too short
