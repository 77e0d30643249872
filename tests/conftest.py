"""Shared fixtures: tiny generated corpora and composed configs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"
SHARED = Path(os.environ.get("AUDIO_SUPERRES_SHARED", REPO.parent / "shared"))

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one worker per core: one torch thread each (and in the scripts the tests
    # start), or the workers' thread pools fight over the cores
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


def voiced_signal(rng: np.random.Generator, seconds: float, sr: int) -> np.ndarray:
    """Harmonics of a gliding pitch plus noise bursts: content across the whole band."""
    t = np.arange(int(seconds * sr)) / sr
    f0 = rng.uniform(90, 220) * (1 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum((0.6 / k) * np.sin(k * phase) for k in range(1, int(0.45 * sr / 220)))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * rng.uniform(1, 3) * t))
    noise = (
        rng.standard_normal(len(t))
        * (rng.uniform(size=len(t) // 800 + 1) > 0.7).repeat(800)[: len(t)]
    )
    y = envelope * x + 0.05 * noise
    return (0.3 * y / np.abs(y).max()).astype(np.float32)


def write_corpus(
    root: Path,
    speakers: int = 3,
    files: int = 2,
    seconds: float = 1.5,
    sr: int = 16000,
    seed: int = 0,
) -> Path:
    rng = np.random.default_rng(seed)
    for s in range(speakers):
        for f in range(files):
            path = root / f"spk{s}" / f"utt{f}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, voiced_signal(rng, seconds, sr), sr, subtype="FLOAT")
    return root


@pytest.fixture
def tiny_corpus(tmp_path: Path) -> Path:
    """3 speakers x 2 utterances of 1.5 s at 16 kHz; spk2 is the one to hold out."""
    return write_corpus(tmp_path / "corpus")
