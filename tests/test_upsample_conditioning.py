"""upsample.py input_conditioning (issue 20 item 4): each file's low-res input is measured, logged
and re-filtered with the training filter only when its top band is louder than the training
input's; matched input passes bit for bit unchanged."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy import signal

from audio_superres.dsp.lowpass import make_lowres
from audio_superres.errors import ConfigError
from audio_superres.tasks.upsample import Upsampler, upsample

from .conftest import voiced_signal, write_tiny_checkpoint
from .test_upsampling import cfg


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    """An untrained checkpoint (Chebyshev training filter), its net shaping the output."""
    return write_tiny_checkpoint(tmp_path / "model.ckpt", final_std=0.3)


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """Low-res files at 4 kHz: matched (make_lowres, Chebyshev), aliased, narrow, silent."""
    rng = np.random.default_rng(0)
    hr = voiced_signal(rng, 1.5, 16000).astype(np.float64)
    t = torch.from_numpy(hr)[None]
    src = tmp_path / "in"
    src.mkdir()
    files = {
        "matched": make_lowres(t, 4, "chebyshev")[0].numpy(),
        "aliased": hr[::4],
        # an 1 kHz recording brought to 4 kHz: nothing above 500 Hz of the 2 kHz band
        "narrow": signal.resample_poly(make_lowres(t, 16, "chebyshev")[0].numpy(), 4, 1),
        "silent": np.zeros(3000),
    }
    for name, x in files.items():
        sf.write(src / f"{name}.wav", x.astype(np.float32), 4000, subtype="FLOAT")
    return src, hr


def run(ckpt: Path, src: Path, out: Path, **kw) -> dict[str, np.ndarray]:
    upsample(cfg(ckpt, input=str(src), output=str(out), **kw))
    return {p.stem: sf.read(p, dtype="float32")[0] for p in out.glob("*.wav")}


def test_matched_input_untouched_mismatched_refiltered(ckpt, inputs, tmp_path, caplog):
    src, _ = inputs
    off = run(ckpt, src, tmp_path / "off", input_conditioning="off")
    with caplog.at_level("INFO", logger="audio_superres.tasks.upsample"):
        auto = run(ckpt, src, tmp_path / "auto", report=True)
    assert np.array_equal(auto["matched"], off["matched"])  # bit for bit
    assert np.array_equal(auto["silent"], off["silent"])
    assert not np.allclose(auto["aliased"], off["aliased"], atol=1e-3)
    # re-filtered = the model on the re-filtered input (the training filter at 4 kHz)
    always = run(ckpt, src, tmp_path / "always", input_conditioning="always")
    np.testing.assert_array_equal(always["aliased"], auto["aliased"])
    assert not np.allclose(always["matched"], auto["matched"], atol=1e-3)

    lines = {r.getMessage() for r in caplog.records}
    per_file = {n: [m for m in lines if f"{n}.wav: bandwidth" in m] for n in ("matched", "aliased")}
    assert "unchanged" in per_file["matched"][0] and "re-filtered" in per_file["aliased"][0]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("narrow.wav: effective bandwidth" in w for w in warnings), warnings
    assert any("silent.wav: effective bandwidth 0 Hz" in w for w in warnings), warnings
    assert not any("matched.wav" in w or "aliased.wav" in w for w in warnings), warnings

    rows = {
        r["input"]: r
        for r in csv.DictReader((tmp_path / "auto" / "report" / "per_file.csv").open())
    }
    assert (rows["matched.wav"]["refiltered"], rows["aliased.wav"]["refiltered"]) == (
        "False",
        "True",
    )
    assert 0 < float(rows["narrow.wav"]["bandwidth_hz"]) < 600
    assert float(rows["aliased.wav"]["top_band_excess_db"]) > 10
    assert rows["silent.wav"]["reason"].startswith("silent")
    page = (tmp_path / "auto" / "report" / "index.html").read_text()
    assert "re-filtered: top band" in page and "unchanged: top band within" in page


def test_hr_input_degraded_with_the_training_filter_is_left_unchanged(ckpt, inputs, tmp_path):
    _, hr = inputs
    sf.write(tmp_path / "hr.wav", hr.astype(np.float32), 16000, subtype="FLOAT")
    kw = {"input_kind": "hr"}
    up = Upsampler.from_config(cfg(ckpt))
    reader, _, f = up._lowres_input(tmp_path / "hr.wav", "hr")
    with f:
        same, check = up.condition_input(tmp_path / "hr.wav", "hr", reader)
    assert same is reader and not check.refilter
    off = run(ckpt, tmp_path / "hr.wav", tmp_path / "off", input_conditioning="off", **kw)
    auto = run(ckpt, tmp_path / "hr.wav", tmp_path / "auto", **kw)
    assert np.array_equal(auto["hr"], off["hr"])
    # degraded with another filter (lowpass=none): measured, and re-filtered
    aliased = run(ckpt, tmp_path / "hr.wav", tmp_path / "none", lowpass="none", **kw)
    plain = run(ckpt, tmp_path / "hr.wav", tmp_path / "none_off", lowpass="none",
                input_conditioning="off", **kw)  # fmt: skip
    assert not np.allclose(aliased["hr"], plain["hr"], atol=1e-3)


def test_unknown_conditioning_mode_is_refused(ckpt):
    with pytest.raises(ConfigError, match="input_conditioning must be one of auto, off, always"):
        Upsampler.from_config(cfg(ckpt, input_conditioning="sometimes"))
