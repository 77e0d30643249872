"""The demo speech corpus: the spectral selection and trimming, and a small real build."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import butter, sosfiltfilt

from audio_superres.data.audio_io import trim_silence
from audio_superres.data.demo_speech import (
    DEMO_TEST_SPEAKERS,
    DemoDataMissingError,
    DemoSpeechCorpus,
    build_demo_speech,
    has_full_band,
    is_complete,
    spectrum_stats,
)


def test_spectral_filter_and_trimming_on_synthetic_signals() -> None:
    sr = 44100
    rng = np.random.default_rng(0)
    t = np.arange(sr) / sr
    tone = 0.5 * np.sin(2 * np.pi * 7500 * t) + 0.3 * np.sin(2 * np.pi * 300 * t)
    assert has_full_band(tone, sr)
    noise = rng.standard_normal(sr)
    assert has_full_band(noise, sr)
    assert not has_full_band(sosfiltfilt(butter(8, 4000, fs=sr, output="sos"), noise), sr)
    assert not has_full_band(noise[::5], sr // 5)  # 8.8 kHz file: below the 16 kHz minimum
    spectrum = np.fft.rfft(noise)
    spectrum[np.fft.rfftfreq(sr, 1 / sr) > 7450] *= 1e-2  # stops near 7.5 kHz, like klettres es
    cliff = np.fft.irfft(spectrum, sr)
    stats = spectrum_stats(cliff, sr)  # enough energy near 8 kHz, but a cliff at 7.5 kHz
    assert stats["band_fraction"] > 1e-7 and stats["edge_drop_db"] > 20
    assert not has_full_band(cliff, sr)
    padded = np.concatenate([np.zeros(sr), tone, 1e-5 * rng.standard_normal(sr)])
    trimmed = trim_silence(padded, sr, threshold_db=40, margin_s=0.05)
    assert len(tone) <= len(trimmed) <= len(tone) + 0.1 * sr + 2 * 441


def test_missing_packages_tell_the_user_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(DemoDataMissingError, match="apt-get install klettres-data ktuberling"):
        build_demo_speech(tmp_path / "out", klettres_dir=tmp_path / "no_klettres")


def test_small_real_build_is_complete_and_idempotent(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo"
    langs = ("de", "it", "ru")
    manifest = build_demo_speech(out, languages=langs, max_files_per_lang=2, num_workers=1)
    assert manifest["options"]["max_files_per_lang"] == 2
    assert set(manifest["languages"]) <= set(langs) and manifest["files"] >= 3
    assert manifest == json.loads((out / "manifest.json").read_text())
    kept = [r for r in manifest["sources"] if r["out"]]
    assert len(kept) == manifest["files"] and all(Path(r["path"]).is_file() for r in kept)
    for r in kept:
        info = sf.info(str(out / r["out"]))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "FLOAT")
        assert r["out"].startswith(f"{r['lang']}/") and info.duration >= 0.3
        assert r["band_fraction"] > 1e-7 and r["native_sr"] >= 16000 and r["edge_drop_db"] < 20
    assert is_complete(out, max_files_per_lang=2, languages=langs)
    assert not is_complete(out)  # a full build is not the same thing

    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    capsys.readouterr()
    assert build_demo_speech(out, languages=langs, max_files_per_lang=2) == manifest
    assert "up to date" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == mtimes

    corpus = DemoSpeechCorpus(out, test_speakers=["ru"])
    assert {f.speaker for f in corpus.files()} == set(manifest["languages"])
    assert corpus.name == "demo_speech" and DemoSpeechCorpus().test_speakers == DEMO_TEST_SPEAKERS
