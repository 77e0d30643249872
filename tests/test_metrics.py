"""Metrics against an independent numpy/scipy reference written from REFERENCE section 5."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import torch

from audio_superres import metrics
from audio_superres.metrics import (
    LSD,
    LSDHF,
    LSDLF,
    METRIC_KEYS,
    SISDR,
    SNR,
    LSDPaper,
    SuperResMetrics,
    compute_metrics,
    compute_metrics_many,
    lsd,
    lsd_hf,
    lsd_lf,
    lsd_paper,
    si_sdr,
    snr,
)

SR = 16000
N_FFT, HOP = 2048, 512
RTOL = 1e-4

# ------------------------------------------------------------------------------------------
# numpy reference, straight from REFERENCE section 5


def ref_power(x: np.ndarray) -> np.ndarray:
    """|STFT|^2 as (frames, 1025): centred, reflect-padded, periodic Hann, no scaling."""
    window = scipy.signal.get_window("hann", N_FFT)  # periodic (fftbins=True)
    padded = np.pad(x.astype(np.float64), N_FFT // 2, mode="reflect")
    n_frames = 1 + (len(padded) - N_FFT) // HOP
    frames = np.stack([padded[i * HOP : i * HOP + N_FFT] * window for i in range(n_frames)])
    return np.abs(np.fft.rfft(frames, axis=-1)) ** 2


def ref_snr(pred: np.ndarray, target: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(target**2) / np.sum((target - pred) ** 2)))


def ref_lsd(
    pred: np.ndarray, target: np.ndarray, start_bin: int = 0, stop_bin: int | None = None
) -> float:
    p_y = np.log10(np.maximum(ref_power(target), 1e-8))[:, start_bin:stop_bin]
    p_h = np.log10(np.maximum(ref_power(pred), 1e-8))[:, start_bin:stop_bin]
    return float(np.mean(np.sqrt(np.mean((p_y - p_h) ** 2, axis=1))))


def ref_si_sdr(pred: np.ndarray, target: np.ndarray) -> float:
    """Le Roux et al. 2019, eq. (2)-(3), on zero-mean signals, no epsilon."""
    y = target - target.mean()
    yhat = pred - pred.mean()
    alpha = np.dot(yhat, y) / np.dot(y, y)
    e_target = alpha * y
    e_residual = yhat - e_target
    return float(10 * np.log10(np.sum(e_target**2) / np.sum(e_residual**2)))


def ref_lsd_paper(pred: np.ndarray, target: np.ndarray, clip: bool = True) -> float:
    s1 = np.log(ref_power(target).T + 1e-8)  # (freq, time), as librosa returns it
    s2 = np.log(ref_power(pred).T + 1e-8)
    value = float(np.mean(np.sqrt(np.mean((s1 - s2) ** 2 + 1e-8, axis=1)), axis=0))
    return min(value, 10.0) if clip else value


# ------------------------------------------------------------------------------------------
# signals


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def sine(n: int, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    return amp * np.sin(2 * np.pi * freq * np.arange(n) / SR)


def chirp(n: int) -> np.ndarray:
    t = np.arange(n) / SR
    return 0.3 * scipy.signal.chirp(t, f0=50, t1=t[-1], f1=7500, method="logarithmic")


def noise(n: int, seed: int, amp: float = 0.1) -> np.ndarray:
    return amp * _rng(seed).standard_normal(n)


def lowpassed(x: np.ndarray, ratio: int) -> np.ndarray:
    sos = scipy.signal.cheby1(8, 0.05, 0.95 / ratio, output="sos")
    return scipy.signal.sosfiltfilt(sos, x)


def pairs() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, pred, target): realistic pairs at the lengths that matter."""
    out = []
    for n in (1500, 16000, 40001):
        target = sine(n) + chirp(n) + noise(n, n)
        out.append((f"lowpass-{n}", lowpassed(target, 4), target))
        out.append((f"noisy-{n}", target + noise(n, n + 1, 0.05), target))
        out.append((f"sine-vs-chirp-{n}", sine(n, 1000.0), chirp(n)))
    return out


def t64(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))


# ------------------------------------------------------------------------------------------
# the reference itself


def test_reference_stft_matches_scipy() -> None:
    """The hand-framed reference equals scipy's STFT with reflect ('even') extension, unscaled."""
    x = chirp(16000) + noise(16000, 0)
    window = scipy.signal.get_window("hann", N_FFT)
    _, _, z = scipy.signal.stft(
        x,
        window=window,
        nperseg=N_FFT,
        noverlap=N_FFT - HOP,
        boundary="even",
        padded=False,
        detrend=False,
        return_onesided=True,
    )
    power = (np.abs(z) * window.sum()) ** 2  # undo scipy's 1/sum(window) scaling
    np.testing.assert_allclose(ref_power(x), power.T, rtol=1e-9, atol=1e-9)
    assert window[0] == 0 and window[1] == window[-1]  # periodic, not symmetric


# ------------------------------------------------------------------------------------------
# functional forms against the reference


@pytest.mark.parametrize("name,pred,target", pairs(), ids=[p[0] for p in pairs()])
def test_functional_matches_reference(name: str, pred: np.ndarray, target: np.ndarray) -> None:
    p, t = t64(pred), t64(target)
    assert snr(p, t).item() == pytest.approx(ref_snr(pred, target), rel=RTOL)
    assert lsd(p, t).item() == pytest.approx(ref_lsd(pred, target), rel=RTOL)
    for ratio in (2, 4):
        start = int(1025 / ratio)
        expected = ref_lsd(pred, target, start)
        assert lsd_hf(p, t, ratio).item() == pytest.approx(expected, rel=RTOL)
        expected_lf = ref_lsd(pred, target, 0, start)
        assert lsd_lf(p, t, ratio).item() == pytest.approx(expected_lf, rel=RTOL)
    assert lsd_paper(p, t).item() == pytest.approx(ref_lsd_paper(pred, target), rel=RTOL)
    assert si_sdr(p, t).item() == pytest.approx(ref_si_sdr(pred, target), rel=RTOL, abs=1e-6)


def test_snr_eps_is_negligible_on_ordinary_signals() -> None:
    target = chirp(16000)
    pred = target + noise(16000, 3, 1e-3)  # ~ 47 dB
    assert abs(snr(t64(pred), t64(target)).item() - ref_snr(pred, target)) < 1e-3


@pytest.mark.parametrize("n", [1, 2, 300, 1000, 1024, 1025, 1026, 1500])
def test_short_signals_follow_numpy_reflect_padding(n: int) -> None:
    """Shorter than n_fft // 2 + 1: torch.stft could not reflect-pad; numpy.pad semantics."""
    target = noise(n, n) + 0.01
    pred = 0.7 * target + noise(n, n + 1, 0.02)
    p, t = t64(pred), t64(target)
    assert lsd(p, t).item() == pytest.approx(ref_lsd(pred, target), rel=RTOL)
    assert lsd_hf(p, t, 3).item() == pytest.approx(ref_lsd(pred, target, 341), rel=RTOL)
    assert lsd_lf(p, t, 3).item() == pytest.approx(ref_lsd(pred, target, 0, 341), rel=RTOL)
    assert lsd_paper(p, t).item() == pytest.approx(ref_lsd_paper(pred, target), rel=RTOL)


def test_float32_input_is_computed_in_float64() -> None:
    target = (chirp(8000) + noise(8000, 1)).astype(np.float32)
    pred = lowpassed(target, 2).astype(np.float32)
    got = lsd(torch.from_numpy(pred), torch.from_numpy(target))
    assert got.dtype == torch.float64
    assert got.item() == pytest.approx(ref_lsd(pred, target), rel=1e-9)


def test_batched_equals_per_row_and_shapes() -> None:
    n = 12000
    targets = np.stack([sine(n, 220.0), chirp(n), noise(n, 5)])
    preds = np.stack([lowpassed(row, 3) for row in targets])
    p, t = t64(preds), t64(targets)
    batched = compute_metrics(p, t, 3)
    assert list(batched) == list(METRIC_KEYS)
    assert METRIC_KEYS == ("snr", "si_sdr", "lsd", "lsd_hf", "lsd_lf", "lsd_paper")
    separate = {"snr": snr, "si_sdr": si_sdr, "lsd": lsd, "lsd_paper": lsd_paper}
    for key, fn in separate.items():
        assert batched[key].shape == (3,)
        torch.testing.assert_close(fn(p, t), batched[key], rtol=1e-10, atol=1e-12)
        for i in range(3):
            row = fn(p[i], t[i])
            assert row.shape == ()
            torch.testing.assert_close(row, batched[key][i], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(lsd_hf(p, t, 3), batched["lsd_hf"], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(lsd_lf(p, t, 3), batched["lsd_lf"], rtol=1e-10, atol=1e-12)
    single = compute_metrics(p[1], t[1], 3)
    assert all(v.shape == () for v in single.values())


def test_identical_signals() -> None:
    x = t64(np.stack([chirp(16000), noise(16000, 2)]))
    values = compute_metrics(x, x.clone(), 4)
    assert torch.isfinite(values["snr"]).all() and (values["snr"] > 100).all()
    assert (values["lsd"] == 0).all() and (values["lsd_hf"] == 0).all()
    assert (values["lsd_lf"] == 0).all() and (values["si_sdr"] > 100).all()
    torch.testing.assert_close(values["lsd_paper"], torch.full((2,), 1e-4, dtype=torch.float64))


def test_silence_is_finite() -> None:
    n = 4000
    zero, loud = t64(np.zeros(n)), t64(chirp(n))
    for pred, target in ((zero, zero), (zero, loud), (loud, zero)):
        values = compute_metrics(pred, target, 2)
        for key, value in values.items():
            assert torch.isfinite(value), (key, value)
    assert snr(zero, zero).item() == pytest.approx(0.0, abs=1e-9)
    assert snr(zero, loud).item() == pytest.approx(0.0, abs=1e-6)
    assert snr(loud, zero).item() < -100
    assert lsd(zero, zero).item() == 0.0
    assert lsd_paper(zero, loud).item() == 10.0  # clipped


def test_scale_gives_6_dB() -> None:
    target = chirp(16000) + noise(16000, 4)
    assert snr(t64(0.5 * target), t64(target)).item() == pytest.approx(6.0206, abs=1e-4)


@pytest.mark.parametrize("ratio", [2, 3, 4, 8])
def test_lsd_hf_uses_exactly_bins_from_int_1025_over_ratio(ratio: int) -> None:
    target = noise(20000, 10)
    pred = noise(20000, 11)
    start = int(1025 / ratio)
    assert metrics.hf_start_bin(ratio) == start
    got = lsd_hf(t64(pred), t64(target), ratio).item()
    assert got == pytest.approx(ref_lsd(pred, target, start), rel=1e-9)
    for off_by_one in (start - 1, start + 1):
        assert abs(got - ref_lsd(pred, target, off_by_one)) > 1e-6 * got


def test_lsd_paper_clip_at_10() -> None:
    target = noise(16000, 5, 1.0)
    pred = 1e-6 * noise(16000, 6)
    assert ref_lsd_paper(pred, target, clip=False) > 10.0
    assert lsd_paper(t64(pred), t64(target)).item() == 10.0
    # below the clip it is the plain value
    target = chirp(16000) + noise(16000, 7)
    pred = target + noise(16000, 8, 0.05)
    unclipped = ref_lsd_paper(pred, target, clip=False)
    assert unclipped < 10.0
    assert lsd_paper(t64(pred), t64(target)).item() == pytest.approx(unclipped, rel=RTOL)


def test_input_validation() -> None:
    x = torch.zeros(2, 100)
    with pytest.raises(ValueError, match="same shape"):
        lsd(x, torch.zeros(2, 101))
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        snr(torch.zeros(2, 1, 100), torch.zeros(2, 1, 100))
    with pytest.raises(ValueError, match="empty"):
        lsd(torch.zeros(0), torch.zeros(0))
    with pytest.raises(TypeError, match="floating"):
        snr(torch.zeros(5, dtype=torch.int16), torch.zeros(5, dtype=torch.int16))
    for bad in (1, 0.5):
        with pytest.raises(ValueError, match="ratio"):
            lsd_hf(x, x, bad)
        with pytest.raises(ValueError, match="ratio"):
            LSDHF(bad)
        with pytest.raises(ValueError, match="ratio"):
            lsd_lf(x, x, bad)
        with pytest.raises(ValueError, match="ratio"):
            LSDLF(bad)


# ------------------------------------------------------------------------------------------
# torchmetrics classes


def _three_utterances() -> tuple[torch.Tensor, torch.Tensor]:
    n = 9000
    targets = np.stack([chirp(n), sine(n, 300.0) + noise(n, 7), noise(n, 8)])
    preds = np.stack([lowpassed(row, 2) for row in targets])
    return t64(preds), t64(targets)


@pytest.mark.parametrize(
    "metric,fn",
    [
        (SNR(), snr),
        (SISDR(), si_sdr),
        (LSD(), lsd),
        (LSDHF(2), lambda p, t: lsd_hf(p, t, 2)),
        (LSDLF(2), lambda p, t: lsd_lf(p, t, 2)),
        (LSDPaper(), lsd_paper),
    ],
    ids=["snr", "si_sdr", "lsd", "lsd_hf", "lsd_lf", "lsd_paper"],
)
def test_metric_classes_average_over_utterances(metric, fn) -> None:
    preds, targets = _three_utterances()
    metric.update(preds[:2], targets[:2])  # (B, T)
    metric.update(preds[2], targets[2])  # (T,)
    expected = torch.stack([fn(preds[i], targets[i]) for i in range(3)]).mean()
    torch.testing.assert_close(metric.compute(), expected, rtol=1e-10, atol=1e-12)
    metric.reset()
    metric.update(preds[1:], targets[1:])
    torch.testing.assert_close(metric.compute(), fn(preds[1:], targets[1:]).mean())


def test_compute_metrics_many_shares_the_target_and_feeds_the_collection() -> None:
    """One target STFT for several predictions gives compute_metrics' numbers exactly, and
    feeding those values to the collection equals its own per-pair computation."""
    preds, targets = _three_utterances()
    other = preds.flip(0)[:, : preds.shape[-1]].contiguous()
    many = compute_metrics_many({"a": preds, "b": other}, targets, 2)
    for name, pred in (("a", preds), ("b", other)):
        single = compute_metrics(pred, targets, 2)
        for key in METRIC_KEYS:
            torch.testing.assert_close(many[name][key], single[key], rtol=0, atol=0)
    assert not torch.equal(many["a"]["snr"], many["b"]["snr"])
    direct, shared = SuperResMetrics(2), SuperResMetrics(2)
    direct.update(preds, targets)
    shared.update_values(many["a"])
    for key, value in direct.compute().items():
        torch.testing.assert_close(shared.compute()[key], value, rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="same shape"):
        compute_metrics_many({"a": preds, "short": preds[:, :-1]}, targets, 2)


def test_superres_metrics_collection() -> None:
    preds, targets = _three_utterances()
    collection = SuperResMetrics(2)
    assert set(collection.keys()) == set(METRIC_KEYS)
    # a perfect first batch makes LSD and LSD-HF states equal: they must not be merged
    collection.update(targets[:1], targets[:1])
    collection.update(preds[1:], targets[1:])
    result = collection.compute()
    both = torch.cat([targets[:1], preds[1:]])
    per_utt = compute_metrics(both, targets, 2)
    for key, values in per_utt.items():
        torch.testing.assert_close(result[key], values.mean(), rtol=1e-10, atol=1e-12)
    assert result["lsd"] != result["lsd_hf"]
    prefixed = SuperResMetrics(4, prefix="val/cubic_")
    assert set(prefixed.keys(keep_base=False)) == {
        "val/cubic_snr",
        "val/cubic_si_sdr",
        "val/cubic_lsd",
        "val/cubic_lsd_hf",
        "val/cubic_lsd_lf",
        "val/cubic_lsd_paper",
    }


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    preds, targets = _three_utterances()
    cpu = compute_metrics(preds.float(), targets.float(), 4)
    gpu = compute_metrics(preds.float().cuda(), targets.float().cuda(), 4)
    for key in cpu:
        assert gpu[key].device.type == "cuda"
        torch.testing.assert_close(gpu[key].cpu(), cpu[key], rtol=1e-6, atol=1e-9)
