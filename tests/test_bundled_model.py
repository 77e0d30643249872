"""The bundled speech model `speech-r4` on real files: its card is reproduced from its weights,
the command runs it by default, the Python API runs it at any input rate (issue 21 items 3, 5)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audio_superres import SuperResolver, pretrained
from audio_superres.dsp.cubic import cubic_upsample
from audio_superres.dsp.lowpass import make_lowres
from audio_superres.metrics import lsd

from .conftest import REPO, SHARED

NAME = "speech-r4"
VCTK = SHARED / "data" / "vctk_test_clips" / "hr"
needs_vctk = pytest.mark.skipif(not VCTK.is_dir(), reason=f"{VCTK} is not here (../shared)")


def card() -> dict:
    return pretrained.bundled_models()[NAME]


def test_the_bundled_model_ships_within_its_limits():
    c = card()
    weights = pretrained.WEIGHTS_DIR / c["weights"]["file"]
    assert weights.stat().st_size == c["weights"]["bytes"] <= pretrained.MAX_BUNDLED_BYTES
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == c["weights"]["sha256"]
    assert (c["ratio"], c["sample_rate"]) == (4, 16000)
    for key in ("command", "global_step", "wall_time_s", "data"):
        assert c["training"][key], key
    for label in ("validation", "heldout_languages", "vctk_clips", "robustness_vctk"):
        assert c["evaluation"][label]["command"].startswith("python evaluate.py"), label


@needs_vctk
@pytest.mark.slow
def test_its_card_is_reproduced_from_the_shipped_weights(tmp_path):
    """The VCTK numbers of the card, recomputed from the safetensors file by evaluate.py in
    float32 (as the card's were): a card can never drift from its weights."""
    out = tmp_path / "eval"
    proc = subprocess.run(
        [sys.executable, "evaluate.py", f"ckpt_path={NAME}", "precision=32", "lowpass=chebyshev",
         "data=folder", f"data.root={VCTK}", "data.test_speakers=*", "perceptual_metrics=false",
         f"data.cache_dir={tmp_path}/cache", f"hydra.run.dir={out}"],  # fmt: skip
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads((out / "metrics.json").read_text())
    want = card()["evaluation"]["vctk_clips"]
    assert got["n_files"] == want["n_files"] == 5
    for side in ("model", "cubic"):
        for key in ("snr", "si_sdr", "lsd", "lsd_hf"):
            assert got[side][key] == pytest.approx(want[side][key], abs=2e-3), (side, key)


@needs_vctk
def test_the_command_runs_it_by_default_on_a_real_recording(tmp_path):
    clip = sorted(VCTK.glob("*.wav"))[0]
    y, rate = sf.read(clip, dtype="float32")
    assert rate == 16000
    lr = make_lowres(torch.from_numpy(y), 4, "chebyshev").numpy()
    src = tmp_path / "recording.wav"
    sf.write(src, lr, 4000, subtype="FLOAT")
    exe = Path(sys.executable).with_name("audio-superres")
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "audio_superres.cli"]
    proc = subprocess.run(
        [*cmd, "upsample", str(src), "-o", str(tmp_path / "out"), "--precision", "32"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    hr, out_rate = sf.read(tmp_path / "out" / "recording.wav", dtype="float32")
    assert out_rate == 16000 and len(hr) == 4 * len(lr)
    listed = subprocess.run([*cmd, "models"], capture_output=True, text=True, timeout=300)
    assert f"{NAME} (the default):" in listed.stdout
    assert "vctk_clips: SNR" in listed.stdout


@needs_vctk
def test_the_python_api_takes_any_rate_and_beats_cubic_lsd_on_real_speech():
    """From an 8 kHz file (resampled to the model's 4 kHz first) and from its own 4 kHz input:
    16 kHz out; on the model's own input its spectrum is closer to the truth than cubic's."""
    sr = SuperResolver.from_pretrained(NAME, device="cpu", precision="32")
    assert sr.info["card"]["name"] == NAME and (sr.lr_rate, sr.sample_rate) == (4000, 16000)
    clip = sorted(VCTK.glob("*.wav"))[1]
    y, _ = sf.read(clip, dtype="float32")
    y = torch.from_numpy(y[: len(y) // 4 * 4])
    lr = make_lowres(y, 4, "chebyshev")
    hr, rate = sr.sr(lr.numpy(), 4000)
    assert rate == 16000 and hr.shape == y.shape and np.isfinite(hr).all()
    cubic = cubic_upsample(lr[None], 4)[0]
    assert lsd(torch.from_numpy(hr)[None], y[None]) < lsd(cubic[None], y[None]) - 0.5
    from8k, rate8 = sr.sr(np.stack([y[::2].numpy()] * 2), 8000)  # stereo, another rate
    assert rate8 == 16000 and from8k.shape == (2, len(y))
