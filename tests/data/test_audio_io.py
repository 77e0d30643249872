"""read_audio / write_audio / to_mono / trim_silence and resample_audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from audio_superres.data.audio_io import (
    AudioFileError,
    read_audio,
    to_mono,
    trim_silence,
    write_audio,
)
from audio_superres.dsp.resample import resample_audio
from audio_superres.utils import atomic_write_bytes


def test_wav_round_trip_is_exact_float32(tmp_path: Path, tones) -> None:
    x = tones(0.5, 22050, channels=2)
    write_audio(tmp_path / "x.wav", x, 22050)
    y, sr = read_audio(tmp_path / "x.wav")
    assert sr == 22050 and y.dtype == np.float32 and y.shape == (2, 11025)
    np.testing.assert_array_equal(y, x)
    assert sf.info(str(tmp_path / "x.wav")).subtype == "FLOAT"
    assert [p.name for p in tmp_path.iterdir()] == ["x.wav"]  # no temporary left behind


def test_flac_is_24_bit_pcm(tmp_path: Path, tones) -> None:
    x = tones(0.3, 16000)
    write_audio(tmp_path / "x.flac", x, 16000)
    y, sr = read_audio(tmp_path / "x.flac")
    assert sf.info(str(tmp_path / "x.flac")).subtype == "PCM_24"
    assert y.shape == (1, len(x)) and np.abs(y[0] - x).max() < 1e-6


def test_unsupported_suffix_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="x.mp3"):
        write_audio(tmp_path / "x.mp3", np.zeros(10, np.float32), 16000)


@pytest.mark.parametrize(
    ("content", "problem"),
    [(b"RIFF not really a wav file", "cannot decode"), (None, "no audio frames")],
)
def test_bad_files_are_named(tmp_path: Path, content: bytes | None, problem: str) -> None:
    path = tmp_path / "bad.wav"
    if content is None:
        write_audio(path, np.zeros(0, np.float32), 16000)
    else:
        atomic_write_bytes(path, content)
    with pytest.raises(AudioFileError, match=problem) as err:
        read_audio(path)
    assert str(err.value).startswith(f"{path}: ")


def test_non_finite_samples_and_missing_files(tmp_path: Path) -> None:
    x = np.ones(100, np.float32)
    x[50] = np.nan
    write_audio(tmp_path / "nan.wav", x, 16000)
    with pytest.raises(AudioFileError, match=r"nan\.wav: contains non-finite"):
        read_audio(tmp_path / "nan.wav")
    with pytest.raises(AudioFileError, match="missing.wav: file not found"):
        read_audio(tmp_path / "missing.wav")


def test_to_mono_averages_channels() -> None:
    x = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    np.testing.assert_array_equal(to_mono(x), [0.5, 0.5])
    assert to_mono(np.ones(3)).dtype == np.float32


def test_trim_silence_keeps_sound_plus_margin(tones) -> None:
    sr = 16000
    sound = tones(0.5, sr)
    x = np.concatenate([np.zeros(sr), sound, 1e-6 * np.ones(sr)]).astype(np.float32)
    y = trim_silence(x, sr, threshold_db=40, margin_s=0.05)
    assert 0.5 * sr <= len(y) <= 0.5 * sr + 2 * 0.05 * sr + 2 * 160
    assert np.abs(y).max() == np.abs(sound).max()
    assert len(trim_silence(np.zeros(100, np.float32), sr)) == 0


def test_resample_audio_matches_resample_poly_with_reduced_factors(tones) -> None:
    x = tones(0.5, 44100)
    y = resample_audio(x, 44100, 16000)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, resample_poly(x, 160, 441), atol=1e-6)
    same = resample_audio(x, 16000, 16000)
    np.testing.assert_array_equal(same, x)
    stereo = resample_audio(np.stack([x, x]), 44100, 22050)
    assert stereo.shape == (2, len(x) // 2)


def test_resample_keeps_a_tone_at_its_frequency() -> None:
    sr, f = 22050, 1000.0
    x = np.sin(2 * np.pi * f * np.arange(sr) / sr).astype(np.float32)
    y = resample_audio(x, sr, 16000)
    spectrum = np.abs(np.fft.rfft(y))
    assert np.fft.rfftfreq(len(y), 1 / 16000)[spectrum.argmax()] == pytest.approx(f, abs=1)
    with pytest.raises(ValueError, match="positive"):
        resample_audio(x, 0, 16000)
