"""The band-limited model-input upsampler (`dsp.sinc`, filter `dsp.resample.sinc_kernel`).

Checked against two independent references: the exact band-limited interpolation of a sum of
sinusoids (evaluated analytically at the high-rate instants) and soxr, the field's resampler
library (VHQ). Tolerance on signals whose content lies inside the passband, away from the ends:
1e-4 of the peak (-80 dB; the filter's passband ripple is ~1e-5, soxr's and the analytic error far
below), so it holds on any CPU kernel. Then the property the setting exists for: no images above
the low-res Nyquist (>= 90 dB down), where the cubic spline leaves them at -10 dB or louder.
"""

from __future__ import annotations

import numpy as np
import pytest
import soxr
import torch
from scipy.signal import welch

from audio_superres.dsp.cubic import cubic_upsample
from audio_superres.dsp.resample import SINC_HALF_WIDTH, SINC_PASSBAND, sinc_kernel
from audio_superres.dsp.sinc import SincUpsample, sinc_upsample

RATIOS = [2, 3, 4, 8]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
TOLERANCE = 1e-4  # of the signal's peak, inside the passband, away from the ends


def sinusoids(m: int, ratio: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A sum of 40 sinusoids below 0.75 of the low-res Nyquist (inside the passband): the
    low-res samples `(m,)` and the exact band-limited signal at the high rate `(m * ratio,)`."""
    rng = np.random.default_rng(seed)
    freq = rng.uniform(0, 0.75 * 0.5, 40)  # cycles per low-res sample; Nyquist = 0.5
    phase = rng.uniform(0, 2 * np.pi, 40)
    amp = rng.standard_normal(40)

    def at(t: np.ndarray) -> np.ndarray:
        return (amp * np.cos(2 * np.pi * freq * t[:, None] + phase)).sum(-1)

    return at(np.arange(m, dtype=np.float64)), at(np.arange(m * ratio) / ratio)


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("device", DEVICES)
def test_band_limited_signal_matches_exact_interpolation_and_soxr(ratio: int, device: str) -> None:
    m = 1500
    x, exact = sinusoids(m, ratio, seed=ratio)
    y = sinc_upsample(torch.from_numpy(x).to(device), ratio).cpu().numpy()
    by_soxr = soxr.resample(x, 1000, 1000 * ratio, quality="VHQ")
    assert y.shape == exact.shape == by_soxr.shape == (m * ratio,)
    edge = 150  # LR samples: soxr's own end transients reach ~120 (ours SINC_HALF_WIDTH)
    inner = slice(edge * ratio, (m - edge) * ratio)
    peak = np.abs(exact).max()
    assert np.abs(y - exact)[inner].max() < TOLERANCE * peak
    assert np.abs(y - by_soxr)[inner].max() < TOLERANCE * peak
    # the references agree with each other far better than the tolerance
    assert np.abs(by_soxr - exact)[inner].max() < 0.01 * TOLERANCE * peak
    # float32 in: the same up to float32 rounding
    y32 = sinc_upsample(torch.from_numpy(x).float().to(device), ratio).cpu().numpy()
    assert y32.dtype == np.float32
    assert np.abs(y32 - exact)[inner].max() < TOLERANCE * peak


def image_level_db(y: np.ndarray, ratio: int, above: float) -> float:
    """Loudest spectral level at or above `above` x the low-res Nyquist, in dB relative to the
    mean level below the passband edge (Welch, Kaiser-20 window: leakage < -150 dB)."""
    freq, power = welch(y, fs=2.0 * ratio, window=("kaiser", 20.0), nperseg=512 * ratio, axis=-1)
    power = power.reshape(-1, power.shape[-1]).mean(0)  # freq in units of the low-res Nyquist
    return float(10 * np.log10(power[freq >= above].max() / power[freq <= SINC_PASSBAND].mean()))


@pytest.mark.parametrize("ratio", RATIOS)
def test_no_images_above_the_low_res_nyquist_where_cubic_has_them(ratio: int) -> None:
    """White low-res noise (content up to its Nyquist, as aliased input has): above 1.05 x the
    low-res Nyquist the sinc output is at least 90 dB down; the spline's images are not."""
    x = torch.from_numpy(np.random.default_rng(ratio).standard_normal((4, 8192)))
    sinc = image_level_db(sinc_upsample(x, ratio).numpy(), ratio, 1.05)
    cubic = image_level_db(cubic_upsample(x, ratio).numpy(), ratio, 1.05)
    assert sinc < -90, sinc
    assert cubic > -20, cubic


@pytest.mark.parametrize("ratio", RATIOS)
def test_kernel_is_the_impulse_response_and_its_reach_is_the_half_width(ratio: int) -> None:
    h = sinc_kernel(ratio)
    assert h.shape == (2 * SINC_HALF_WIDTH * ratio + 1,)
    np.testing.assert_allclose(h, h[::-1], rtol=0, atol=1e-15)  # linear phase, no delay
    for phase in range(ratio):  # each phase sums to 1: constants pass exactly
        assert abs(h[phase::ratio].sum() - 1.0) < 1e-12
    m, p = 4 * SINC_HALF_WIDTH + 1, 2 * SINC_HALF_WIDTH
    x = torch.zeros(m, dtype=torch.float64)
    x[p] = 1.0
    y = sinc_upsample(x, ratio).numpy()
    reach = SINC_HALF_WIDTH * ratio
    np.testing.assert_allclose(y[p * ratio - reach : p * ratio + reach + 1], h, rtol=0, atol=1e-14)
    assert not y[: p * ratio - reach].any() and not y[p * ratio + reach + 1 :].any()


@pytest.mark.parametrize("m", [1, 2, 3, 7, SINC_HALF_WIDTH, SINC_HALF_WIDTH + 1, 300])
def test_any_length_and_constants_exactly(m: int) -> None:
    x = torch.full((2, 3, m), 0.25, dtype=torch.float64)
    y = sinc_upsample(x, 3)
    assert y.shape == (2, 3, 3 * m)
    torch.testing.assert_close(y, torch.full_like(y, 0.25), rtol=0, atol=1e-14)
    z = torch.randn(2, 3, m, dtype=torch.float64)
    y = sinc_upsample(z, 3)
    assert torch.isfinite(y).all()
    for i in range(2):  # batched rows are independent
        torch.testing.assert_close(y[i, 1], sinc_upsample(z[i, 1], 3), rtol=0, atol=1e-13)
    assert sinc_upsample(torch.randn(0, 50), 4).shape == (0, 200)
    assert sinc_upsample(torch.randn(2, 0), 4).shape == (2, 0)


def test_linear_differentiable_dtypes_and_autocast() -> None:
    x = torch.randn(2, 40, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: sinc_upsample(t, 3), (x,), fast_mode=True)
    a, b = torch.randn(2, 100), torch.randn(2, 100)
    torch.testing.assert_close(
        sinc_upsample(2 * a - b, 4), 2 * sinc_upsample(a, 4) - sinc_upsample(b, 4)
    )
    assert sinc_upsample(a, 1) is a
    assert sinc_upsample(a.to(torch.bfloat16), 2).dtype == torch.bfloat16
    # float32 in, float32 out, and autocast does not lower its precision
    plain = sinc_upsample(a, 4)
    assert plain.dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = SincUpsample(4)(a)
    assert under.dtype == torch.float32
    assert torch.equal(under, plain)
    with torch.inference_mode():  # cached constants built under inference mode still train later
        sinc_upsample(torch.randn(1, 50, dtype=torch.float64), 5)
    w = torch.randn(1, 50, dtype=torch.float64, requires_grad=True)
    sinc_upsample(w, 5).sum().backward()
    assert w.grad is not None and torch.isfinite(w.grad).all()


def test_module_has_no_state_and_bad_arguments_fail() -> None:
    up = SincUpsample(4)
    assert not list(up.parameters()) and not up.state_dict()
    assert "ratio=4" in repr(up)
    with pytest.raises(ValueError, match="ratio"):
        SincUpsample(0)
    with pytest.raises(TypeError, match="ratio"):
        SincUpsample(2.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="floating-point"):
        sinc_upsample(torch.zeros(2, 10, dtype=torch.int64), 2)
    with pytest.raises(ValueError, match="0-d"):
        sinc_upsample(torch.tensor(1.0), 2)
