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


# the tiny U-Net of the checkpoint tests (r = 4, 16 kHz)
TINY_UNET = {
    "_target_": "audio_superres.models.AudioUNet",
    "ratio": 4,
    "filters": [8, 8],
    "kernels": [9, 9],
    "bottleneck_filters": 8,
}


def write_tiny_checkpoint(
    path: Path,
    lowpass: object = "chebyshev",
    final_std: float | None = None,
    model: dict | None = None,
    **extra: object,
) -> Path:
    """An untrained checkpoint of `model` (default `TINY_UNET`) as Lightning writes it
    (state_dict + hyper_parameters), seeded: the same weights every time. `final_std`: its last
    conv re-drawn with that std, so that the net, not its upsampled input, shapes the output;
    `extra`: more top-level entries (e.g. global_step)."""
    from audio_superres.module import SuperResolutionModule  # Lightning: only when asked for

    torch.manual_seed(0)
    module = SuperResolutionModule(
        model=model or TINY_UNET, ratio=4, sample_rate=16000, lowpass=lowpass
    )
    if final_std is not None:
        torch.nn.init.normal_(module.model.final.weight, std=final_std)
    state = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    torch.save({**state, **extra}, path)
    return path


@pytest.fixture
def tiny_ckpt(tmp_path: Path) -> Path:
    """An untrained tiny U-Net checkpoint (`write_tiny_checkpoint`)."""
    return write_tiny_checkpoint(tmp_path / "model.ckpt")


@pytest.fixture
def tiny_corpus(tmp_path: Path) -> Path:
    """3 speakers x 2 utterances of 1.5 s at 16 kHz; spk2 is the one to hold out."""
    return write_corpus(tmp_path / "corpus")
