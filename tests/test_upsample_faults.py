"""Fault injection for the inference path (upsample.py) and the one-line promises of
docs/reliability.md: what a shell script feeding a thousand files would hit.

Each test states the promise it checks. docs/reliability.md lists every promise with its test.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from omegaconf import OmegaConf

from audio_superres.data.audio_io import AudioFileError, read_audio
from audio_superres.dsp.blockwise import FileReader
from audio_superres.errors import UserFacingError, run_task
from audio_superres.module import SuperResolutionModule
from audio_superres.tasks.upsample import upsample

from .conftest import REPO, voiced_signal

LR = 4000  # the test checkpoint's low-res rate (16 kHz / 4)
MODEL = {
    "_target_": "audio_superres.models.AudioUNet",
    "ratio": 4,
    "filters": [8, 8],
    "kernels": [9, 9],
    "bottleneck_filters": 8,
}


def _save(module: SuperResolutionModule, path: Path, **hp_changes) -> Path:
    hp = {**dict(module.hparams), **hp_changes}
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": hp}, path)
    return path


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    """An untrained tiny U-Net checkpoint, as Lightning writes one (state_dict + hparams)."""
    torch.manual_seed(0)
    return _save(SuperResolutionModule(model=MODEL, ratio=4, sample_rate=16000),
                 tmp_path / "model.ckpt")  # fmt: skip


def _cfg(ckpt: Path, src: Path, dst: Path, **kw):
    base = {
        "ckpt_path": str(ckpt),
        "input": str(src),
        "output": str(dst),
        "ratio": None,
        "sample_rate": None,
        "device": "cpu",
        "progress": False,
        "inference": {"chunk": 512, "overlap": 128, "batch_size": 8},
    }
    return OmegaConf.create({**base, **kw})


def _good(path: Path, seconds: float = 0.2, sr: int = LR, seed: int = 0, channels: int = 1):
    rng = np.random.default_rng(seed)
    x = np.stack([voiced_signal(rng, seconds, sr) for _ in range(channels)], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, sr, subtype="FLOAT")
    return path


def _write_bad(kind: str, path: Path) -> Path:
    """A file a user's folder may hold that cannot be super-resolved."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "nan":
        x = voiced_signal(np.random.default_rng(0), 0.2, LR)
        x[50] = np.nan
        sf.write(path, x, LR, subtype="FLOAT")
    elif kind == "inf":
        x = voiced_signal(np.random.default_rng(0), 0.2, LR)
        x[50] = np.inf
        sf.write(path, x, LR, subtype="FLOAT")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":  # the header declares 8000 frames, the file holds fewer
        sf.write(path, 0.1 * np.ones(8000, np.float32), LR, subtype="PCM_16")
        data = path.read_bytes()
        path.write_bytes(data[: 44 + 2 * 2652])
    elif kind == "header only":
        sf.write(path, np.zeros((0, 1), np.float32), LR, subtype="FLOAT")
    elif kind == "not audio":
        path.write_text("speaker,text\np225,Please call Stella.\n")
    elif kind == "corrupt":
        path.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(64)))
    else:
        raise ValueError(kind)
    return path


BAD_KINDS = {
    "nan": "contains non-finite samples",
    "inf": "contains non-finite samples",
    "empty": "cannot decode audio",
    "truncated": "truncated file",
    "header only": "contains no audio frames",
    "not audio": "cannot decode audio",
    "corrupt": "cannot decode audio",
}


def _stream_all(path: Path) -> None:
    with FileReader(path) as f:
        while f.read(1000).shape[0]:
            pass


@pytest.mark.parametrize("kind", sorted(BAD_KINDS))
def test_one_reader_gives_the_same_error_on_both_paths(tmp_path: Path, kind: str) -> None:
    """Promise: one reader checks every file the same way. Truncation, non-finite samples, zero
    frames and undecodable files give the same one-line error naming the file from the
    streaming path (upsample.py's FileReader) as from the dataset path (read_audio)."""
    path = _write_bad(kind, tmp_path / "x.wav")
    with pytest.raises(AudioFileError) as dataset:
        read_audio(path)
    with pytest.raises(AudioFileError) as streaming:
        _stream_all(path)
    assert str(dataset.value) == str(streaming.value)
    assert str(dataset.value).startswith(f"{path}: {BAD_KINDS[kind]}")
    assert "\n" not in str(dataset.value)
    from audio_superres.data import audio_io

    assert FileReader is audio_io.AudioReader  # one class, not two that agree today


def test_frames_missing_behind_the_header_are_truncation_on_both_paths(tmp_path, monkeypatch):
    """Promise: a file that yields fewer frames than its header declares (a format whose header
    libsndfile cannot cross-check) is 'truncated', never shorter output without a word."""
    path = _good(tmp_path / "x.wav")
    real_read = sf.SoundFile.read

    def short_read(self, frames=-1, *args, **kwargs):
        return real_read(self, frames, *args, **kwargs)[:-5]

    monkeypatch.setattr(sf.SoundFile, "read", short_read)
    for read in (read_audio, _stream_all):
        with pytest.raises(AudioFileError, match=f"{path}: truncated file .*declares 800 frames"):
            read(path)
