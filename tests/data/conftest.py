"""Fixtures for the data tests: a tiny folder corpus of synthetic audio in mixed formats."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from audio_superres.data.audio_io import write_audio
from audio_superres.utils import atomic_write_text


def tones_and_noise(seconds: float, sr: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A few tones plus noise, amplitude < 0.5: broadband, deterministic, never clipping."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * sr)) / sr
    x = sum(0.1 * np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in rng.uniform(100, 4000, 3))
    out = np.stack([x + 0.05 * rng.standard_normal(len(t)) for _ in range(channels)])
    return out.astype(np.float32) if channels > 1 else out[0].astype(np.float32)


# speaker/relative path: (seconds, sample rate, channels)
CORPUS_FILES = {
    "alice/a1.wav": (1.5, 16000, 1),
    "alice/a2.wav": (1.2, 22050, 1),
    "alice/a3.flac": (1.0, 16000, 1),
    "bob/b1.wav": (2.0, 22050, 2),
    "bob/session/b2.wav": (1.5, 16000, 1),
    "bob/b3.WAV": (1.0, 16000, 1),
    "carol/c1.wav": (1.3, 44100, 1),
    "carol/c2.wav": (1.8, 16000, 2),
    "carol/c3.wav": (1.0, 16000, 1),
}


def write_folder_corpus(root: Path) -> Path:
    """Write CORPUS_FILES under `root`, plus files the corpus must ignore."""
    for i, (rel, (seconds, sr, channels)) in enumerate(sorted(CORPUS_FILES.items())):
        write_audio(root / rel, tones_and_noise(seconds, sr, channels, seed=i), sr)
    atomic_write_text(root / "alice" / "notes.txt", "not audio\n")
    write_audio(root / "bob" / ".partial.wav", tones_and_noise(0.5, 16000), 16000)
    return root


@pytest.fixture
def folder_corpus(tmp_path: Path) -> Path:
    """3 speakers x 3 files of 1-2 s: 16/22.05/44.1 kHz, two stereo, one FLAC, one nested."""
    return write_folder_corpus(tmp_path / "corpus")


@pytest.fixture
def tones() -> Callable[..., np.ndarray]:
    """The synthetic signal generator, for tests that write their own files."""
    return tones_and_noise
