"""Training/test degradations besides the IIR filters (dsp/degrade.py through make_lowres), each
checked by a property of its output: the resamplers against scipy and soxr, the MP3 codec lossy,
decodable and aligned, aliasing at full level; the robust draws seeded, reproducible, resumable."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import soxr
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf
from scipy import signal

from audio_superres.dsp.blockwise import lowpass_context
from audio_superres.dsp.degrade import mp3_delay, mp3_roundtrip, poly_taps, resample_down
from audio_superres.dsp.lowpass import (
    LowpassSpec,
    as_lowpass_spec,
    check_sample_rate,
    draw_lowpass_specs,
    make_lowres,
)
from audio_superres.module import SuperResolutionModule

from ..conftest import CONF_DIR, voiced_signal
from ..test_configs import compose_train

SR = 16000


def snr_db(ref: np.ndarray, est: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref**2) / np.sum((ref - est) ** 2)))


def lowpass_config(name: str) -> dict:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR / "lowpass"), version_base=None):
        return OmegaConf.to_container(compose(config_name=name), resolve=True)


# ---- resamplers ---------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [2, 4])
def test_poly_kaiser_is_scipy_resample_poly(ratio: int) -> None:
    """Tolerance 1e-10 (float64): the same firwin design, padding and delay as scipy's."""
    x = np.random.default_rng(ratio).standard_normal((2, 4001))
    defaults = LowpassSpec("resample", resampler="poly_kaiser", cutoff=1.0, filter_width=10,
                           kaiser_beta=5.0)
    out = make_lowres(torch.from_numpy(x), ratio, defaults).numpy()
    n = x.shape[-1] - x.shape[-1] % ratio
    ref = signal.resample_poly(x[:, :n], 1, ratio, axis=-1)
    np.testing.assert_allclose(out, ref, atol=1e-10)
    # other settings: scipy with the same taps given as its window
    taps = poly_taps(ratio, 0.9, 16, 9.0)
    got = resample_down(torch.from_numpy(x[:, :n]), ratio, "poly_kaiser", 0.9, 16, 9.0).numpy()
    np.testing.assert_allclose(got, signal.resample_poly(x[:, :n], 1, ratio, window=taps, axis=-1),
                               atol=1e-10)


def test_the_grids_soxr_hq_resampler_matches_soxr_within_40_db() -> None:
    """The robustness grid's `resample_soxr_hq` (a Kaiser-windowed sinc) against soxr's own HQ
    resampler on white noise (every frequency, the transition band included): the difference is
    more than 40 dB below the signal away from the edges (measured 47 dB)."""
    grid = OmegaConf.load(CONF_DIR / "degradations" / "robustness.yaml")
    (cond,) = [dict(c) for c in grid.degradations.extra if c.name == "resample_soxr_hq"]
    cond.pop("name")
    x = np.random.default_rng(0).standard_normal(32000)
    ours = make_lowres(torch.from_numpy(x), 4, cond).numpy()
    ref = soxr.resample(x, SR, SR // 4, "HQ")
    assert ours.shape == ref.shape == (8000,)
    assert snr_db(ref[400:-400], ours[400:-400]) > 40


@pytest.mark.parametrize("resampler", ["sinc_hann", "sinc_kaiser", "poly_kaiser"])
def test_resamplers_are_zero_phase_and_keep_the_passband(resampler: str) -> None:
    """Low-res sample k sits at high-res k*r, as for the filters: a 300 Hz tone comes out equal to
    the tone's every r-th sample (interior, 1e-3), and the length is n // r."""
    t = np.arange(8003) / SR
    x = np.sin(2 * np.pi * 300 * t)
    out = make_lowres(torch.from_numpy(x), 4, {"kind": "resample", "resampler": resampler,
                                                "cutoff": 0.95, "filter_width": 16}).numpy()
    assert out.shape == (2000,)
    np.testing.assert_allclose(out[100:-100], x[:8000:4][100:-100], atol=1e-3)


def test_resampler_context_makes_blockwise_equal_to_whole_file() -> None:
    """`lowpass_context` of a resampler covers its kernel: a block computed from its context
    only equals the whole file's output there."""
    x = np.random.default_rng(1).standard_normal(20000).astype(np.float32)
    spec = {"kind": "resample", "resampler": "sinc_kaiser", "cutoff": 0.9, "filter_width": 32}
    whole = make_lowres(torch.from_numpy(x), 4, spec).numpy()
    ctx = lowpass_context(as_lowpass_spec(spec), 4)
    # a block in the middle, computed from its context only, equals the whole file's
    a, b = 8000, 12000
    part = make_lowres(torch.from_numpy(x[a - ctx : b + ctx]), 4, spec).numpy()
    np.testing.assert_allclose(part[ctx // 4 : ctx // 4 + (b - a) // 4], whole[a // 4 : b // 4],
                               atol=1e-5)


# ---- aliasing -----------------------------------------------------------------------------


def test_no_filter_leaves_the_top_band_at_full_level() -> None:
    """White noise decimated without a filter keeps its level in the top fifth of the low-res
    band (aliases fold in at full level); the Chebyshev reference takes it down by > 10 dB."""
    x = torch.from_numpy(np.random.default_rng(2).standard_normal((8, 16384)))

    def top_vs_low_db(lr: torch.Tensor) -> float:
        f, p = signal.welch(lr.numpy(), fs=SR // 4, nperseg=256, axis=-1)
        p = p.mean(0)
        top = p[(f >= 0.85 * SR / 8) & (f < 0.98 * SR / 8)].mean()
        low = p[(f > 0.1 * SR / 8) & (f < 0.5 * SR / 8)].mean()
        return float(10 * np.log10(top / low))

    assert abs(top_vs_low_db(make_lowres(x, 4, "none"))) < 0.5
    assert top_vs_low_db(make_lowres(x, 4, "chebyshev")) < -10


# ---- MP3 ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kbps", [16, 64])
def test_mp3_is_lossy_decodable_and_sample_aligned(kbps: int) -> None:
    """16 kbps: libsndfile's decoder leaves LAME's 1105-sample delay in (measured and removed);
    64 kbps: it trims it itself. Either way the decoded signal has the input's length, lines up
    with it (cross-correlation peak at lag 0), and is not the input (finite, bounded SNR)."""
    x = voiced_signal(np.random.default_rng(3), 1.0, SR)
    y = mp3_roundtrip(x, SR, kbps)
    assert y.shape == x.shape and y.dtype == np.float32
    assert not np.array_equal(x, y)
    assert mp3_delay(SR, float(kbps)) == (1105 if kbps == 16 else 0)
    quality = snr_db(x, y)
    assert np.isfinite(quality) and 3 < quality < 40
    corr = signal.correlate(y, x, mode="full")
    lags = signal.correlation_lags(len(y), len(x), mode="full")
    assert lags[np.argmax(corr)] == 0
    # the higher bitrate is the better copy
    if kbps == 64:
        assert quality > snr_db(x, mp3_roundtrip(x, SR, 16))


def test_mp3_in_make_lowres_codes_the_high_res_signal_then_decimates() -> None:
    y = torch.from_numpy(np.stack([voiced_signal(np.random.default_rng(s), 0.5, SR)
                                   for s in range(2)]))
    spec = {"kind": "chebyshev", "codec": "mp3", "bitrate_kbps": 32}
    lr = make_lowres(y, 4, spec, sample_rate=SR)
    coded = torch.from_numpy(np.stack([mp3_roundtrip(r.numpy(), SR, 32) for r in y]))
    assert lr.shape == (2, 2000) and lr.dtype == y.dtype
    torch.testing.assert_close(lr, make_lowres(coded, 4, "chebyshev"))
    assert not torch.equal(lr, make_lowres(y, 4, "chebyshev"))
    with pytest.raises(ValueError, match="sample_rate"):
        make_lowres(y, 4, spec)
    with pytest.raises(ValueError, match="outside layer III's 32-320 kbps at 48000 Hz"):
        make_lowres(y, 4, spec | {"bitrate_kbps": 16}, sample_rate=48000)


# ---- draws --------------------------------------------------------------------------------


def legacy_draws(spec: LowpassSpec, n: int, rng: np.random.Generator) -> list[tuple]:
    """lowpass=random's draws as they were before the degradations (the same generator calls)."""
    out = []
    for _ in range(n):
        family = spec.families[int(rng.integers(len(spec.families)))]
        order = int(rng.integers(spec.order_range[0], spec.order_range[1] + 1))
        ripple = float(np.exp(rng.uniform(np.log(spec.ripple_range[0]),
                                          np.log(spec.ripple_range[1]))))
        attenuation = float(rng.uniform(*spec.attenuation_range))
        cutoff = round(float(rng.uniform(*spec.cutoff_range)), 4)
        out.append((family, order, ripple, attenuation, cutoff))
    return out


def test_lowpass_random_draws_exactly_what_it_drew_before() -> None:
    spec = as_lowpass_spec(lowpass_config("random"))
    assert not spec.draws_degradations
    drawn = draw_lowpass_specs(spec, 50, np.random.default_rng([5, 3, 0]))
    assert [(s.kind, s.order, s.ripple_db, s.attenuation_db, s.cutoff) for s in drawn] == (
        legacy_draws(spec, 50, np.random.default_rng([5, 3, 0]))
    )
    assert all(s.codec == "none" and s.zero_phase for s in drawn)


def test_lowpass_robust_draws_every_degradation_seeded_per_example(tmp_path) -> None:
    cfg = compose_train(["lowpass=robust"], tmp_path)
    assert OmegaConf.to_container(cfg.lowpass, resolve=True) == lowpass_config("robust")
    spec = as_lowpass_spec(lowpass_config("robust"))
    assert spec.kind == "random" and spec.draws_degradations
    assert spec.families == ("chebyshev", "butterworth", "bessel", "elliptic")  # from random
    a = draw_lowpass_specs(spec, 400, np.random.default_rng(9))
    assert a == draw_lowpass_specs(spec, 400, np.random.default_rng(9))
    assert a != draw_lowpass_specs(spec, 400, np.random.default_rng(10))
    kinds = [s.kind for s in a]
    share = {k: kinds.count(k) / len(a) for k in set(kinds)}
    assert abs(share["none"] - spec.p_none) < 0.06
    assert abs(share["resample"] - spec.p_resample) < 0.07
    assert {s.resampler for s in a if s.kind == "resample"} == set(spec.resamplers)
    filters = [s for s in a if s.kind not in ("none", "resample")]
    assert abs(np.mean([not s.zero_phase for s in filters]) - spec.p_one_pass) < 0.08
    coded = [s for s in a if s.codec == "mp3"]
    assert abs(len(coded) / len(a) - spec.p_codec) < 0.06
    assert {s.bitrate_kbps for s in coded} <= set(spec.codec_bitrates)
    for s in a:
        if s.kind == "resample":
            assert spec.resample_cutoff_range[0] <= s.cutoff <= spec.resample_cutoff_range[1]
            assert spec.filter_width_range[0] <= s.filter_width <= spec.filter_width_range[1]


def test_robust_training_inputs_depend_on_the_batch_position_only() -> None:
    """Training batch j draws from (seed, j, rank): a module that resumes at batch 5 makes the
    inputs an unbroken run makes at batch 5 (codec rows included), on the training device's
    tensors; validation restarts from lowpass.seed."""
    model = {"_target_": "audio_superres.models.CubicBaseline", "ratio": 4}
    hr = torch.from_numpy(np.stack([voiced_signal(np.random.default_rng(s), 0.25, SR)
                                    for s in range(6)]))

    def module_at(batch: int) -> SuperResolutionModule:
        m = SuperResolutionModule(model=model, ratio=4, sample_rate=SR,
                                  lowpass=lowpass_config("robust") | {"p_codec": 0.5})
        loop = SimpleNamespace(epoch_loop=SimpleNamespace(total_batch_idx=batch))
        m._trainer = SimpleNamespace(fit_loop=loop, global_rank=0)
        return m

    torch.manual_seed(7)
    unbroken = module_at(0)
    seen = []
    for j in range(6):
        unbroken.trainer.fit_loop.epoch_loop.total_batch_idx = j
        seen.append(unbroken.make_inputs(hr, unbroken._rng("train"))[1])
    resumed = module_at(5)
    torch.manual_seed(7)
    again = resumed.make_inputs(hr, resumed._rng("train"))[1]
    torch.testing.assert_close(again, seen[5], rtol=0, atol=0)
    assert not torch.equal(seen[4], seen[5])
    v1 = unbroken.make_inputs(hr, unbroken._rng("val"))[1]
    unbroken.on_validation_epoch_start()
    torch.testing.assert_close(unbroken.make_inputs(hr, unbroken._rng("val"))[1], v1)


def test_bad_degradation_settings_name_the_setting() -> None:
    with pytest.raises(ValueError, match="p_none \\+ p_resample"):
        LowpassSpec("random", p_none=0.6, p_resample=0.6)
    with pytest.raises(ValueError, match="resampler 'sox'"):
        LowpassSpec("resample", resampler="sox")
    with pytest.raises(ValueError, match="p_codec"):
        LowpassSpec("random", codec="mp3")
    with pytest.raises(ValueError, match="codec 'aac'"):
        LowpassSpec("chebyshev", codec="aac")
    # a codec the run's rate cannot carry stops the run when it starts, naming the setting
    robust = as_lowpass_spec(lowpass_config("robust"))
    check_sample_rate(robust, SR)
    with pytest.raises(ValueError, match="codec_bitrates: MP3 bitrate 16 kbps .* 48000 Hz"):
        check_sample_rate(robust, 48000)
    with pytest.raises(ValueError, match="bitrate_kbps: MP3 cannot code 96000 Hz"):
        check_sample_rate(LowpassSpec("none", codec="mp3"), 96000)
    check_sample_rate(LowpassSpec("random", codec_bitrates=[16]), 48000)  # p_codec 0: no codec
    with pytest.raises(ValueError, match="codec_bitrates"):
        SuperResolutionModule(model={"_target_": "audio_superres.models.CubicBaseline",
                                     "ratio": 4}, ratio=4, sample_rate=48000, lowpass=robust)
