"""upsample.py end to end: a directory tree of real-world-shaped inputs, the page, refusals."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from omegaconf import OmegaConf

from audio_superres.checkpoint import CheckpointError
from audio_superres.tasks.upsample import Upsampler, upsample

from .browser import check_media
from .conftest import REPO, voiced_signal, write_tiny_checkpoint


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    """A checkpoint as Lightning writes it (state_dict + hyper_parameters), untrained."""
    return write_tiny_checkpoint(tmp_path / "model.ckpt")


def test_upsample_directory_tree_with_report(ckpt, tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "in"
    (src / "a" / "b").mkdir(parents=True)
    stereo = np.stack([voiced_signal(rng, 0.8, 4000)[:3001], voiced_signal(rng, 0.8, 4000)[:3001]])
    sf.write(src / "a" / "stereo.wav", stereo.T, 4000, subtype="FLOAT")  # odd length, 2 channels
    sf.write(src / "a" / "b" / "short.flac", stereo[0, :101], 4000)  # shorter than one chunk
    sf.write(src / "hi.wav", voiced_signal(rng, 0.5, 44100), 44100)  # wrong rate: resampled
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "upsample.py"),
            f"ckpt_path={ckpt}",
            f"input={src}",
            f"output={out}",
            "report=true",
            "device=cpu",
            "inference.chunk=1024",
            "inference.overlap=256",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "HYDRA_FULL_ERROR": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert Path(proc.stdout.strip().splitlines()[-1]) == out
    assert "hi.wav: sample rate 44100 Hz is not the model's low-res rate 4000 Hz" in (
        proc.stdout + proc.stderr
    )
    y, sr = sf.read(out / "a" / "stereo.wav", always_2d=True)
    assert (sr, y.shape) == (16000, (3001 * 4, 2))
    y, sr = sf.read(out / "a" / "b" / "short.wav", always_2d=True)
    assert (sr, y.shape) == (16000, (101 * 4, 1))
    assert sf.info(out / "hi.wav").frames == round(0.5 * 4000) * 4
    assert not list(out.rglob(".*tmp*"))  # atomic writes leave no temporaries

    page = out / "report" / "index.html"
    text = page.read_text()
    assert "High Resolution" not in text and "SNR" not in text  # LR-only: no HR, no metrics
    assert text.count("Super Resolution") == 3 and "a/b/short.flac" in text
    media = check_media(page, tmp_path)
    assert len(media) == 3 * 3 + 3 and all(m["ok"] for m in media), media


def cfg(ckpt: Path, **kw):
    base = {
        "ckpt_path": str(ckpt),
        "ratio": None,
        "sample_rate": None,
        "device": "cpu",
        "chunk": 512,
        "overlap": 128,
        "progress": False,
    }
    return OmegaConf.create({**base, **kw})


def test_hr_input_is_degraded_with_the_training_filter(ckpt, tmp_path):
    rng = np.random.default_rng(1)
    hr = voiced_signal(rng, 0.6, 16000)[:9599]
    sf.write(tmp_path / "hr.flac", hr, 16000)
    out = tmp_path / "out"
    upsample(
        cfg(
            ckpt,
            input=str(tmp_path / "hr.flac"),
            output=str(out),
            input_kind="hr",
            format="flac",
            report=True,
        )
    )
    y, sr = sf.read(out / "hr.flac")
    assert sr == 16000 and len(y) == 9596  # cropped to a multiple of the ratio
    # an untrained U-Net is ~cubic: close to the reference it was degraded from
    err = np.sum((y - hr[:9596]) ** 2) / np.sum(hr[:9596] ** 2)
    assert err < 0.1
    assert "High Resolution" in (out / "report" / "index.html").read_text()


def test_conflicting_ratio_is_refused_naming_the_checkpoint(ckpt, tmp_path):
    with pytest.raises(CheckpointError, match=f"{ckpt}.*trained with ratio=4"):
        Upsampler.from_config(cfg(ckpt, ratio=2))
    with pytest.raises(CheckpointError, match="sample_rate=16000"):
        Upsampler.from_config(cfg(ckpt, sample_rate=22050))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no audio files"):
        upsample(cfg(ckpt, input=str(tmp_path / "empty"), output=str(tmp_path / "o")))


def test_cli_errors_are_one_line_naming_the_file(ckpt, tmp_path):
    # what a user of upsample.py sees: one line on stderr, exit status 1, no traceback
    fake = tmp_path / "notes.wav"
    fake.write_text("not audio")
    for args, expected in (
        ([f"input={tmp_path / 'missing.wav'}"], f"{tmp_path / 'missing.wav'}: input not found"),
        ([f"input={fake}"], f"{fake}: cannot decode audio"),
        ([f"input={fake}", "ratio=2"], f"{ckpt}: the checkpoint was trained with ratio=4"),
    ):
        proc = subprocess.run(
            [
                sys.executable,
                str(REPO / "upsample.py"),
                f"ckpt_path={ckpt}",
                f"output={tmp_path / 'out'}",
                f"hydra.run.dir={tmp_path / 'run'}",
                *args,
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "HYDRA_FULL_ERROR": "0"},
            stdin=subprocess.DEVNULL,
            timeout=300,
        )
        assert proc.returncode == 1, proc.stderr[-2000:]
        assert proc.stderr.strip().splitlines()[-1].startswith(f"Error: {expected}")
        assert "Traceback" not in proc.stderr


@pytest.fixture
def random_ckpt(tmp_path: Path) -> Path:
    """A checkpoint trained with lowpass=random (a distribution of filters, not one filter)."""
    return write_tiny_checkpoint(tmp_path / "random.ckpt", lowpass="random", final_std=0.3)


@pytest.mark.parametrize(
    ("asked", "used", "phrase"),
    [(None, "chebyshev", "chebyshev"), ("butterworth", "butterworth", "butterworth"),
     ("none", "none", "no filter")],
)  # fmt: skip
def test_hr_input_with_a_random_filter_checkpoint(
    random_ckpt, tmp_path, caplog, asked, used, phrase
):
    """lowpass=random checkpoints: input_kind=hr degrades with lowpass= or the documented
    default (chebyshev, the 2017 decimate), and says which in the log and on the page."""
    from audio_superres.dsp.lowpass import make_lowres
    from audio_superres.inference import super_resolve

    rng = np.random.default_rng(2)
    hr = voiced_signal(rng, 0.5, 16000).astype(np.float32)
    sf.write(tmp_path / "hr.wav", hr, 16000, subtype="FLOAT")
    out = tmp_path / "out"
    extra = {} if asked is None else {"lowpass": asked}
    with caplog.at_level("INFO", logger="audio_superres.tasks.upsample"):
        upsample(
            cfg(random_ckpt, input=str(tmp_path / "hr.wav"), output=str(out), input_kind="hr",
                report=True, **extra)
        )  # fmt: skip
    y, _ = sf.read(out / "hr.wav", dtype="float32")
    up = Upsampler.from_config(cfg(random_ckpt, **extra))
    lr = make_lowres(torch.from_numpy(hr)[None].double(), 4, used)[0].float()
    expected = super_resolve(up.model, lr, 4, chunk=512, overlap=128, device="cpu").numpy()
    np.testing.assert_allclose(y, expected, atol=1e-5)
    log_text = " ".join(r.getMessage() for r in caplog.records)
    assert f"degrading each file with {phrase}" in log_text
    page = (out / "report" / "index.html").read_text()
    assert f"degraded with {phrase}" in page
    if asked is None:
        assert "trained with lowpass=random" in log_text and "order 8, cutoff 0.8" in page


def test_hr_input_refuses_a_random_filter_to_degrade_with(random_ckpt):
    from audio_superres.errors import ConfigError

    with pytest.raises(ConfigError, match="lowpass=random is a distribution"):
        Upsampler.from_config(cfg(random_ckpt, lowpass="random"))
