"""CubicUpsample against scipy's not-a-knot spline (REFERENCE section 3, cubic baseline)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.interpolate import CubicSpline, splev, splrep

from audio_superres.dsp.cubic import CubicUpsample, cubic_upsample, spline_matrix

RATIOS = [2, 3, 4, 6, 8]
LENGTHS = [4, 5, 7, 20, 60, 61, 300, 5000]
DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
    ),
]


def reference_cubic(x: np.ndarray, r: int) -> np.ndarray:
    """`splev(arange(n), splrep(arange(n)[::r], x))` row by row, n = m * r."""
    n = x.shape[-1] * r
    t = np.arange(n)
    rows = x.reshape(-1, x.shape[-1])
    out = np.stack([splev(t, splrep(t[::r], row)) for row in rows])
    return out.reshape(*x.shape[:-1], n)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("m", LENGTHS)
@pytest.mark.parametrize("ratio", RATIOS)
def test_matches_scipy(ratio: int, m: int, device: str) -> None:
    x = np.random.default_rng(1000 * ratio + m).standard_normal((2, m))
    ref = reference_cubic(x, ratio)
    up = CubicUpsample(ratio)

    y64 = up(torch.from_numpy(x).to(device))
    assert y64.shape == (2, m * ratio) and y64.dtype == torch.float64
    assert np.abs(y64.cpu().numpy() - ref).max() < 1e-8

    y32 = up(torch.from_numpy(x).float().to(device))
    assert y32.dtype == torch.float32
    assert np.abs(y32.cpu().double().numpy() - ref).max() < 1e-4


@pytest.mark.parametrize("m", [115, 116, 117, 150])
def test_dense_and_blocked_paths_agree_at_the_switch(m: int) -> None:
    x = np.random.default_rng(m).standard_normal((1, m))
    y = cubic_upsample(torch.from_numpy(x), 4).numpy()
    assert np.abs(y - reference_cubic(x, 4)).max() < 1e-10
    assert np.abs(y[0] - spline_matrix(m, 4) @ x[0]).max() < 1e-10


def test_batched_shapes_equal_per_row() -> None:
    x = torch.randn(2, 3, 200, dtype=torch.float64)
    y = cubic_upsample(x, 3)
    assert y.shape == (2, 3, 600)
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(y[i, j], cubic_upsample(x[i, j], 3), rtol=0, atol=1e-12)
    assert cubic_upsample(torch.randn(0, 200), 3).shape == (0, 600)
    # knots are kept exactly (up to rounding)
    torch.testing.assert_close(y[..., ::3], x, rtol=0, atol=1e-12)


def test_linear_and_differentiable() -> None:
    x = torch.randn(1, 130, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: cubic_upsample(t, 2), (x,), fast_mode=True)
    w = torch.randn(1, 520, dtype=torch.float64)
    (grad,) = torch.autograd.grad((cubic_upsample(x, 4) * w).sum(), x)
    expected = spline_matrix(130, 4).T @ w[0].numpy()
    assert np.abs(grad[0].numpy() - expected).max() < 1e-10


def test_module_has_no_state() -> None:
    up = CubicUpsample(4)
    assert list(up.parameters()) == [] and list(up.buffers()) == []
    assert up.state_dict() == {}
    assert "ratio=4" in repr(up)


def test_short_inputs_fall_back_to_the_interpolating_polynomial() -> None:
    assert cubic_upsample(torch.randn(2, 0), 4).shape == (2, 0)
    x1 = torch.tensor([[2.5]], dtype=torch.float64)
    torch.testing.assert_close(cubic_upsample(x1, 3), torch.full((1, 3), 2.5, dtype=torch.float64))
    for m in (2, 3):
        x = np.random.default_rng(m).standard_normal(m)
        cs = CubicSpline(np.arange(m) * 4, x, bc_type="not-a-knot")  # line / parabola
        y = cubic_upsample(torch.from_numpy(x), 4).numpy()
        assert np.abs(y - cs(np.arange(4 * m))).max() < 1e-12


def test_dtypes_ratio_one_and_errors() -> None:
    x = torch.randn(2, 300)
    assert cubic_upsample(x, 1) is x
    assert cubic_upsample(x.to(torch.bfloat16), 2).dtype == torch.bfloat16
    # autocast must not lower the precision of the baseline
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = cubic_upsample(x, 2)
    assert y.dtype == torch.float32
    assert np.abs(y.double().numpy() - reference_cubic(x.double().numpy(), 2)).max() < 1e-5
    with pytest.raises(TypeError, match="floating"):
        cubic_upsample(torch.zeros(2, 10, dtype=torch.int64), 2)
    with pytest.raises(ValueError, match="ratio"):
        CubicUpsample(0)
    with pytest.raises(TypeError, match="ratio"):
        CubicUpsample(2.5)  # type: ignore[arg-type]


def test_constants_first_built_under_inference_mode_still_support_autograd() -> None:
    from audio_superres.dsp import cubic

    cubic._device_kernels.cache_clear()
    cubic._device_dense.cache_clear()
    with torch.inference_mode():
        cubic_upsample(torch.randn(1, 300), 5)
        cubic_upsample(torch.randn(1, 30), 5)
    for m in (300, 30):
        x = torch.randn(1, m, requires_grad=True)
        cubic_upsample(x, 5).sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
