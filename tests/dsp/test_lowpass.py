"""make_lowres and the torch second-order-section filters against scipy (REFERENCE section 3)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import signal

from audio_superres.dsp.lowpass import (
    LOWPASS_KINDS,
    LowpassSpec,
    as_lowpass_spec,
    crop_to_multiple,
    draw_lowpass_specs,
    lowpass_sos,
    make_lowres,
    sosfilt_torch,
    sosfiltfilt_padlen,
    sosfiltfilt_torch,
)

RATIOS = [2, 3, 4, 6, 8]
DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
    ),
]


def reference_lowres(y: np.ndarray, r: int, kind: str) -> np.ndarray:
    """REFERENCE section 3, written straight from the text (numpy/scipy, float64)."""
    n = y.shape[-1]
    y = y[..., : n - n % r]
    if kind == "none":
        return y[..., ::r]
    if kind == "chebyshev":
        return signal.sosfiltfilt(signal.cheby1(8, 0.05, 0.8 / r, output="sos"), y)[..., ::r]
    if kind == "butterworth":
        return signal.sosfiltfilt(signal.butter(8, 0.8 / r, output="sos"), y)[..., ::r]
    if kind == "bessel":
        return signal.sosfiltfilt(signal.bessel(8, 0.8 / r, norm="mag", output="sos"), y)[..., ::r]
    if kind == "elliptic":
        sos = signal.ellip(8, 0.05, 60.0, 0.8 / r, output="sos")
        return signal.sosfiltfilt(sos, y)[..., ::r]
    raise AssertionError(kind)


def signals(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("kind", ["none", "chebyshev", "butterworth", "bessel", "elliptic"])
def test_make_lowres_matches_scipy(kind: str, ratio: int, device: str) -> None:
    y = signals((3, 1001), seed=ratio)  # odd length: exercises the crop for every ratio > 1
    ref = reference_lowres(y, ratio, kind)

    out64 = make_lowres(torch.from_numpy(y).to(device), ratio, kind)
    assert out64.dtype == torch.float64 and out64.device.type == device
    assert out64.shape == (3, 1001 // ratio)
    assert np.abs(out64.cpu().numpy() - ref).max() < 1e-6

    out32 = make_lowres(torch.from_numpy(y).float().to(device), ratio, kind)
    assert out32.dtype == torch.float32
    assert np.abs(out32.cpu().double().numpy() - ref).max() < 1e-5


@pytest.mark.parametrize("kind", ["none", "chebyshev", "butterworth", "bessel", "elliptic"])
def test_batched_equals_per_row(kind: str) -> None:
    y = torch.from_numpy(signals((2, 3, 517), seed=1))
    out = make_lowres(y, 4, kind)
    assert out.shape == (2, 3, 129)
    assert out.is_contiguous()
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(out[i, j], make_lowres(y[i, j], 4, kind), rtol=0, atol=1e-12)


@pytest.mark.parametrize("ratio", [2, 8])
def test_not_zero_phase_is_causal_sosfilt_with_zero_state(ratio: int) -> None:
    y = signals((2, 803), seed=2)
    n = 803 - 803 % ratio
    sos = signal.cheby1(8, 0.05, 0.8 / ratio, output="sos")
    ref = signal.sosfilt(sos, y[:, :n])[:, ::ratio]
    spec = LowpassSpec(kind="chebyshev", zero_phase=False)
    out = make_lowres(torch.from_numpy(y), ratio, spec).numpy()
    assert np.abs(out - ref).max() < 1e-6


def test_sos_filters_match_scipy_directly() -> None:
    sos = signal.butter(6, 0.13, output="sos")
    y = signals((2, 2, 300), seed=3)
    ff = sosfiltfilt_torch(torch.from_numpy(y), sos).numpy()
    assert np.abs(ff - signal.sosfiltfilt(sos, y)).max() < 1e-9
    f = sosfilt_torch(torch.from_numpy(y), sos).numpy()
    assert np.abs(f - signal.sosfilt(sos, y)).max() < 1e-9


def test_padlen_and_too_short_signals() -> None:
    sos = lowpass_sos(LowpassSpec(), 4)
    assert sosfiltfilt_padlen(sos) == 27  # 4 sections: 3 * (2 * 4 + 1)
    # just long enough: still equal to scipy
    y = signals((28,), seed=4)
    ok = sosfiltfilt_torch(torch.from_numpy(y), sos).numpy()
    assert np.abs(ok - signal.sosfiltfilt(sos, y)).max() < 1e-9
    with pytest.raises(ValueError, match=r"too short.*27.*27"):
        sosfiltfilt_torch(torch.zeros(27, dtype=torch.float64), sos)
    # make_lowres names both lengths, after cropping to a multiple of the ratio
    with pytest.raises(ValueError, match=r"too short.*length 24 .*padlen 27"):
        make_lowres(torch.zeros(2, 27), 4, "chebyshev")
    assert make_lowres(torch.zeros(2, 27), 4, "none").shape == (2, 6)


def test_unknown_kind_lists_the_valid_ones() -> None:
    valid = "none, chebyshev, butterworth, bessel, elliptic, resample, random"
    with pytest.raises(ValueError, match=valid):
        make_lowres(torch.zeros(100), 2, "bessel-ish")
    assert LOWPASS_KINDS == tuple(valid.split(", "))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"order": 0}, "order"),
        ({"cutoff": 0.0}, "cutoff"),
        ({"cutoff": 1.5}, "cutoff"),
        ({"ripple_db": 0.0}, "ripple_db"),
        ({"attenuation_db": -1.0}, "attenuation_db"),
        ({"families": ["none"]}, "families"),
        ({"families": []}, "families"),
        ({"order_range": [5, 2]}, "order_range"),
        ({"cutoff_range": [0.5, 1.2]}, "cutoff_range"),
        ({"ripple_range": [0.1]}, "ripple_range"),
    ],
)
def test_spec_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LowpassSpec(**kwargs)


def test_as_lowpass_spec_accepts_names_specs_and_mappings() -> None:
    cheb = as_lowpass_spec("chebyshev")
    assert cheb == LowpassSpec("chebyshev", 8, 0.05, 0.8, True)
    butter = as_lowpass_spec("butterworth")
    assert (butter.kind, butter.order, butter.cutoff) == ("butterworth", 8, 0.8)
    assert as_lowpass_spec(cheb) is cheb
    from_cfg = as_lowpass_spec(
        {
            "_target_": "ignored",
            "kind": "chebyshev",
            "order": np.int64(8),
            "ripple_db": 0.05,
            "cutoff": 0.8,
            "zero_phase": True,
        }
    )
    assert from_cfg == cheb and hash(from_cfg) == hash(cheb)
    with pytest.raises(ValueError, match="unknown lowpass option"):
        as_lowpass_spec({"kind": "none", "cutof": 0.5})
    with pytest.raises(TypeError):
        as_lowpass_spec(None)  # type: ignore[arg-type]


def test_as_lowpass_spec_accepts_omegaconf() -> None:
    omegaconf = pytest.importorskip("omegaconf")
    cfg = omegaconf.OmegaConf.create({"kind": "butterworth", "order": 4, "cutoff": 0.5})
    assert as_lowpass_spec(cfg) == LowpassSpec("butterworth", order=4, cutoff=0.5)


def test_lowpass_sos_designs_and_copies() -> None:
    assert lowpass_sos(LowpassSpec("none"), 4) is None
    sos = lowpass_sos(LowpassSpec(), 3)
    np.testing.assert_array_equal(sos, signal.cheby1(8, 0.05, 0.8 / 3, output="sos"))
    sos[:] = 0  # the caller's copy; the cached design is untouched
    np.testing.assert_array_equal(
        lowpass_sos(LowpassSpec("butterworth"), 6), signal.butter(8, 0.8 / 6, output="sos")
    )
    assert np.abs(lowpass_sos(LowpassSpec(), 3)).sum() > 0


def test_ratio_handling_and_crop() -> None:
    y = torch.randn(2, 10)
    assert make_lowres(y, 1) is y
    assert crop_to_multiple(y, 3).shape == (2, 9)
    assert crop_to_multiple(y, 20).shape == (2, 0)
    for bad in (0, -2):
        with pytest.raises(ValueError, match="ratio"):
            make_lowres(y, bad)
    for bad in (2.0, True):
        with pytest.raises(TypeError, match="ratio"):
            make_lowres(y, bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="floating"):
        make_lowres(torch.zeros(2, 100, dtype=torch.int64), 2)


def test_constants_first_built_under_inference_mode_still_support_autograd() -> None:
    from audio_superres.dsp import lowpass

    lowpass._sos_tensors.cache_clear()
    lowpass._zero_input_response.cache_clear()
    with torch.inference_mode():
        make_lowres(torch.randn(2, 640), 5)
    y = torch.randn(2, 640, requires_grad=True)
    make_lowres(y, 5).sum().backward()
    assert y.grad is not None and torch.isfinite(y.grad).all()


def test_elliptic_uses_ripple_and_attenuation() -> None:
    spec = LowpassSpec("elliptic", order=6, ripple_db=0.5, attenuation_db=40.0, cutoff=0.7)
    np.testing.assert_array_equal(
        lowpass_sos(spec, 4), signal.ellip(6, 0.5, 40.0, 0.7 / 4, output="sos")
    )
    np.testing.assert_array_equal(
        lowpass_sos(LowpassSpec("bessel", order=3), 2),
        signal.bessel(3, 0.4, norm="mag", output="sos"),
    )


def _gain_db(sos: np.ndarray, wn: float) -> float:
    """|H| in dB of one pass at the normalised digital frequency `wn` (1 = Nyquist)."""
    _, h = signal.sosfreqz(sos, worN=[np.pi * wn])
    return float(20 * np.log10(np.abs(h[0])))


@pytest.mark.parametrize("order", [2, 5, 8])
@pytest.mark.parametrize("ratio", [2, 4, 6])
def test_cutoff_means_what_docs_filters_md_says(order: int, ratio: int) -> None:
    """Butterworth/Bessel: `cutoff` is the -3 dB point of one pass (-6 dB forward-backward);
    Chebyshev I/elliptic: the passband edge, where the gain is -ripple_db."""
    cutoff, ripple, wn = 0.8, 0.05, 0.8 / ratio
    half_power = 10 * np.log10(0.5)  # -3.0103 dB
    for kind in ("butterworth", "bessel"):
        sos = lowpass_sos(LowpassSpec(kind, order=order, cutoff=cutoff), ratio)
        assert _gain_db(sos, wn) == pytest.approx(half_power, abs=1e-3), kind
        assert 2 * _gain_db(sos, wn) == pytest.approx(2 * half_power, abs=2e-3), kind
        assert _gain_db(sos, 0.5 * wn) > half_power  # a low-pass: louder below the cutoff
    for kind in ("chebyshev", "elliptic"):
        sos = lowpass_sos(LowpassSpec(kind, order=order, cutoff=cutoff, ripple_db=ripple), ratio)
        assert _gain_db(sos, wn) == pytest.approx(-ripple, abs=1e-3), kind
        passband = np.linspace(0, wn, 200)
        _, h = signal.sosfreqz(sos, worN=np.pi * passband)
        assert 20 * np.log10(np.abs(h)).min() >= -ripple - 1e-6  # within the ripple band
    # scipy's default Bessel normalisation would put -3 dB far below the cutoff (order 8: ~0.53x)
    if order == 8:
        phase_norm = signal.bessel(8, wn, output="sos")
        assert _gain_db(phase_norm, wn) < -10


def test_random_bessel_draws_use_the_magnitude_normalisation() -> None:
    spec = LowpassSpec("random", families=["bessel"], seed=5)
    for drawn in draw_lowpass_specs(spec, 5):
        sos = lowpass_sos(drawn, 4)
        assert _gain_db(sos, drawn.cutoff / 4) == pytest.approx(10 * np.log10(0.5), abs=1e-3)


def test_random_draws_are_seeded_and_within_the_ranges() -> None:
    spec = LowpassSpec(
        "random", order_range=[3, 5], cutoff_range=[0.7, 0.9], ripple_range=[0.1, 0.2], seed=3
    )
    a = draw_lowpass_specs(spec, 40)
    assert a == draw_lowpass_specs(spec, 40)  # the spec's own seed: reproducible
    assert a == draw_lowpass_specs(spec, 40, np.random.default_rng(3))
    assert a != draw_lowpass_specs(spec, 40, np.random.default_rng(4))
    assert {s.kind for s in a} == {"chebyshev", "butterworth", "bessel", "elliptic"}
    assert all(3 <= s.order <= 5 and 0.7 <= s.cutoff <= 0.9 for s in a)
    assert all(0.1 <= s.ripple_db <= 0.2 and 40 <= s.attenuation_db <= 80 for s in a)
    assert draw_lowpass_specs(LowpassSpec("bessel"), 2) == [LowpassSpec("bessel")] * 2
    with pytest.raises(ValueError, match="distribution"):
        lowpass_sos(spec, 4)


def test_random_make_lowres_filters_each_row_with_its_own_draw() -> None:
    spec = LowpassSpec("random", seed=11)
    y = torch.from_numpy(signals((2, 3, 901), seed=5))
    out = make_lowres(y, 4, spec, np.random.default_rng(7))
    assert out.shape == (2, 3, 225)
    specs = draw_lowpass_specs(spec, 6, np.random.default_rng(7))
    rows = y.reshape(6, 901).numpy()
    for row, s, got in zip(rows, specs, out.reshape(6, -1), strict=True):
        n = 900
        sos = lowpass_sos(s, 4)
        ref = signal.sosfiltfilt(sos, row[:n])[::4]
        assert np.abs(got.numpy() - ref).max() < 1e-6
    # no generator: the spec's seed, so evaluation inputs are reproducible
    torch.testing.assert_close(make_lowres(y, 4, spec), make_lowres(y, 4, spec))
    fresh = make_lowres(y, 4, spec, np.random.default_rng(8))
    assert not torch.equal(fresh, out)
