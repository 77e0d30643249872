"""The samples page, opened from disk by a real browser: every player and image loads."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from audio_superres.report.page import evaluation_page

from .browser import check_media, screenshot
from .conftest import voiced_signal

MISMATCH = (
    "test_lowpass,n_files,model_snr,model_lsd,model_lsd_hf,cubic_snr,cubic_lsd,cubic_lsd_hf\n"
    "chebyshev,2,17.1,2.33,2.68,15.47,3.32,3.77\n"
    "butterworth,2,16.2,2.51,2.91,15.10,3.12,3.55\n"
)


def fake_evaluation(out: Path, n: int = 2) -> None:
    rng = np.random.default_rng(0)
    examples, rows = [], []
    for i in range(n):
        hr = voiced_signal(rng, 0.5, 16000)
        name = f"spk{i}/utt <{i}>.wav"  # a name that needs escaping and a safe file name
        examples.append(
            {"name": name, "speaker": f"spk{i}", "hr": hr, "lr": hr[::4], "cubic": hr, "sr": hr}
        )
        rows.append(
            {
                "name": name,
                "speaker": f"spk{i}",
                "snr": 17.0 + i,
                "lsd": 2.1,
                "cubic_snr": 15.0,
                "cubic_lsd": 3.3,
            }
        )
    summary = {
        who: {"snr": 17.0, "lsd": 2.1, "lsd_hf": 2.5, "lsd_paper": 1.0}
        for who in ("model", "cubic")
    }
    summary["n_files"] = n
    evaluation_page(out, summary, rows, examples, {"ratio": 4, "sample_rate": 16000})


def test_evaluation_page_loads_in_a_browser_with_the_mismatch_table(tmp_path):
    out = tmp_path / "eval"
    out.mkdir()
    (out / "mismatch.csv").write_text(MISMATCH)
    fake_evaluation(out)
    page = out / "report" / "index.html"
    text = page.read_text()
    assert "Filter mismatch" in text and "butterworth" in text and "15.100" in text
    assert "utt &lt;1&gt;.wav" in text and "<1>" not in text
    for label in ("High Resolution", "Low Resolution", "Cubic Baseline", "Super Resolution"):
        assert text.count(label) == 2
    assert "src='/" not in text and "file:" not in text  # relative links only
    media = check_media(page, tmp_path)
    assert [m["tag"] for m in media].count("audio") == 8
    assert [m["tag"] for m in media].count("img") == 2
    assert all(m["ok"] for m in media), [m for m in media if not m["ok"]]
    assert screenshot(page, tmp_path / "page.png").stat().st_size > 10_000


def test_broken_media_are_reported(tmp_path):
    """The browser check itself can fail: a missing WAV and a corrupt PNG are caught."""
    out = tmp_path / "eval"
    fake_evaluation(out, n=1)
    report = out / "report"
    next(report.glob("*_sr.wav")).unlink()
    next(report.glob("*.png")).write_bytes(b"not a png")
    page = report / "index.html"
    assert "Filter mismatch" not in page.read_text()  # no mismatch.csv, no table
    broken = {
        (m["tag"], m["src"].rsplit("_", 1)[-1]) for m in check_media(page, tmp_path) if not m["ok"]
    }
    assert broken == {("audio", "sr.wav"), ("img", "spectrogram.png")}
