"""`python -m audio_superres.report.explain_mismatch` end to end on tiny untrained checkpoints and
tiny generated audio: the band errors add up to the error the metrics see, the ablations that
must be identities are, and the report and plots are written (issue 20)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio_superres.report.explain_mismatch import band_energies, main, set_top_band

from ..conftest import TINY_UNET, voiced_signal, write_tiny_checkpoint


def test_band_energies_add_up_to_the_signal_energy():
    rng = np.random.default_rng(0)
    for n in (1000, 1001):
        x = rng.standard_normal(n)
        edges = np.arange(0.0, 8001.0, 250.0)
        bands = band_energies(x, 16000, edges)
        assert bands.shape == (32,)
        np.testing.assert_allclose(bands.sum(), np.sum(x**2), rtol=1e-10)
    # a tone lands in its band only
    t = np.arange(16000) / 16000
    bands = band_energies(np.sin(2 * np.pi * 1900 * t), 16000, np.arange(0.0, 8001.0, 200.0))
    assert bands.argmax() == 9 and bands[9] / bands.sum() > 0.999


def test_set_top_band_changes_only_the_top_band_and_reaches_the_reference_level():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(8000)
    ref = 0.1 * x  # 20 dB lower everywhere
    y = set_top_band(x, ref)
    f = np.fft.rfftfreq(len(x), 0.5)  # fractions of the Nyquist
    gain = np.abs(np.fft.rfft(y)) / np.abs(np.fft.rfft(x))
    np.testing.assert_allclose(gain[f < 0.8], 1.0, rtol=1e-9)
    np.testing.assert_allclose(gain[(f >= 0.8) & (f <= 1.0)], 0.1, rtol=1e-6)
    np.testing.assert_allclose(set_top_band(x, x), x, atol=1e-12)


@pytest.fixture
def clips(tmp_path: Path) -> Path:
    folder = tmp_path / "hr"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for k in range(2):
        sf.write(folder / f"c{k}.wav", voiced_signal(rng, 0.6, 16000), 16000, subtype="FLOAT")
    return folder


def test_end_to_end_on_tiny_models(tmp_path, clips):
    cubic_net = write_tiny_checkpoint(
        tmp_path / "cubic.ckpt", model={**TINY_UNET, "upsampler": "cubic"}
    )
    sinc_net = write_tiny_checkpoint(
        tmp_path / "sinc.ckpt", model={**TINY_UNET, "upsampler": "sinc"}
    )
    robust = write_tiny_checkpoint(
        tmp_path / "robust.ckpt",
        {"kind": "random", "p_none": 0.25},
        model={**TINY_UNET, "upsampler": "sinc"},
    )
    out = tmp_path / "out"
    results = main([
        "--ckpt", str(cubic_net), "--name", "ucubic",
        "--ckpt", str(sinc_net), "--name", "usinc",
        "--ckpt", str(robust), "--name", "urobust",
        "--files", str(clips), "-o", str(out), "--filters", "chebyshev", "none",
        "--chunk", "4096",
    ])  # fmt: skip
    assert json.loads((out / "results.json").read_text())["filters"] == results["filters"]
    for png in ("lowres_spectrum.png", "ablations.png", "bands_ucubic.png", "bands_usinc.png"):
        assert 1000 < (out / png).stat().st_size < 200_000, png
    report = (out / "report.md").read_text()
    assert "explain_mismatch" in report and "c0.wav" in report and "Seed: 0" in report

    # (a) the training filter's own input sits at 0 dB against itself; aliased input far above
    levels = results["lowres_spectrum"]["top_band_db_vs_training"]
    (ref,) = levels["chebyshev"]
    for half in ("0.8-0.9", "0.9-1.0"):
        assert abs(levels["chebyshev"][ref][half]) < 1e-9
    assert levels["none"][ref]["0.9-1.0"] > 10

    # the report again from results.json alone: the same tables
    again = tmp_path / "again"
    main(["--replot", str(out / "results.json"), "-o", str(again)])
    assert (again / "report.md").read_text() == report
    assert (again / "ablations.png").stat().st_size > 1000

    for name, model in results["models"].items():
        for fname, row in model["filters"].items():
            plain = row["variants"]["plain"]
            # (b) the bands hold all of the error: the pooled SNR of the bands is the metric's SNR
            # (two files: pooled and per-file mean differ, so check each file's own way too)
            assert plain["error_energy"] == pytest.approx(sum(plain["band_error"]), rel=1e-12)
            assert 0 <= plain["near_nyquist_fraction"] <= 1
            assert np.mean(plain["snr_per_file"]) == pytest.approx(plain["snr"], abs=1e-9)
            cubic = row["cubic"]
            assert 10 * np.log10(row["signal_energy"] / cubic["error_energy"]) == pytest.approx(
                cubic["pooled_snr"], abs=1e-9
            )
            # (c) the top band of the training filter's input set to its own level: no change
            if fname == "chebyshev" and name != "urobust":
                assert row["variants"]["top_train"]["snr"] == pytest.approx(plain["snr"], abs=0.05)
            # aliased input raised to the aliased level: no change either
            if fname == "none":
                assert row["variants"]["top_none"]["snr"] == pytest.approx(plain["snr"], abs=0.05)
        # a distribution has no one training level: that ablation is not made up
        if name == "urobust":
            assert model["filters"]["none"]["variants"]["top_train"] is None
    # the sinc upsampler has no images to remove; the cubic spline has
    usinc = results["models"]["usinc"]["filters"]["none"]["variants"]
    ucubic = results["models"]["ucubic"]["filters"]["none"]["variants"]
    assert usinc["no_images"]["snr"] == pytest.approx(usinc["plain"]["snr"], abs=0.05)
    assert abs(ucubic["no_images"]["snr"] - ucubic["plain"]["snr"]) > 0.01


def test_single_file_band_error_matches_the_metric_snr(tmp_path):
    folder = tmp_path / "one"
    folder.mkdir()
    sf.write(folder / "a.wav", voiced_signal(np.random.default_rng(5), 0.5, 16000), 16000,
             subtype="FLOAT")  # fmt: skip
    ckpt = write_tiny_checkpoint(tmp_path / "m.ckpt", model={**TINY_UNET, "upsampler": "cubic"})
    results = main(["--ckpt", str(ckpt), "--files", str(folder), "-o", str(tmp_path / "o"),
                    "--filters", "bessel", "--variants", "plain", "refilter"])  # fmt: skip
    (model,) = results["models"].values()
    row = model["filters"]["bessel"]
    for data in (row["cubic"], row["variants"]["plain"], row["variants"]["refilter"]):
        from_bands = 10 * np.log10(row["signal_energy"] / sum(data["band_error"]))
        assert from_bands == pytest.approx(data["snr"], abs=1e-3)  # metrics.snr, independently
