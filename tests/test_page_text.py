"""What a person reads on the samples page: a speaker only where the corpus has one, the filter
in one phrase, the run's settings without dumps of nested data."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pytest

from audio_superres.dsp.lowpass import LowpassSpec, describe_lowpass, lowpass_to_dict
from audio_superres.report.page import evaluation_meta, evaluation_page, speaker_note

from .conftest import voiced_signal


@pytest.mark.parametrize(
    ("name", "speaker", "note"),
    [
        ("clip1.wav", "hr", ""),  # data.root=.../hr, test_speakers='*': a flat folder
        ("p360/p360_001.wav", "p360", "speaker p360"),
        ("wav48/p360/p360_001.wav", "p360", "speaker p360"),  # VCTK 0.80's tree
        ("de/word_12.wav", "de", "speaker de"),  # the demo corpus: speaker = language
        ("sonata_01.flac", "sonata_01", ""),  # a piano recording: its own group, not a folder
        ("a/b.wav", None, ""),
    ],
)
def test_speaker_is_shown_only_when_it_is_a_folder_of_the_file(name, speaker, note) -> None:
    assert speaker_note(name, speaker) == note


def page_text(tmp_path: Path, names: list[str], speakers: list[str], meta: dict) -> str:
    rng = np.random.default_rng(0)
    examples, rows = [], []
    for name, speaker in zip(names, speakers, strict=True):
        hr = voiced_signal(rng, 0.3, 16000)
        examples.append({"name": name, "speaker": speaker, "hr": hr, "lr": hr[::4],
                         "cubic": hr, "sr": hr})
        rows.append({"name": name, "speaker": speaker, "snr": 17.0, "lsd": 2.0,
                     "cubic_snr": 15.0, "cubic_lsd": 3.3})
    summary = {who: {"snr": 17.0, "lsd": 2.0, "lsd_hf": 2.5, "lsd_paper": 1.0}
               for who in ("model", "cubic")}
    summary["n_files"] = len(names)
    page = evaluation_page(tmp_path, summary, rows, examples,
                           {"ratio": 4, "sample_rate": 16000, **meta})
    return html.unescape(page.read_text())


def test_flat_folder_page_names_no_speaker_and_the_filter_in_one_phrase(tmp_path: Path) -> None:
    spec = lowpass_to_dict(LowpassSpec("chebyshev"))  # what checkpoints store: every field
    assert "order_range" in spec and "families" in spec
    text = page_text(tmp_path, ["clip1.wav", "clip2.wav"], ["hr", "hr"],
                     {"lowpass": "chebyshev", "lowpass_spec": spec,
                      "model_target": "audio_superres.models.APBWE", "seed": 1234,
                      "versions": {"torch": "2.11.0", "lightning": "2.6.0"},
                      "checkpoint": "run/checkpoints/best.ckpt"})
    assert "speaker" not in text
    assert "chebyshev (order 8, cutoff 0.8, ripple 0.05 dB, zero phase)" in text
    settings = text[text.index("<ul class='meta'>") + 17:text.index("</ul>")]
    for dumped in ("order_range", "families", "attenuation", "cutoff_range", "{", "'"):
        assert dumped not in settings, dumped
    assert "model: <code>APBWE</code>" in text and "torch 2.11.0, lightning 2.6.0" in text
    assert "4000 Hz in, 16000 Hz out (4x)" in text and "every 4th sample" in text


def test_nested_corpus_page_names_speakers(tmp_path: Path) -> None:
    text = page_text(tmp_path, ["spk0/a.wav", "spk1/b.wav"], ["spk0", "spk1"],
                     {"lowpass": "butterworth"})
    assert "speaker spk0" in text and "speaker spk1" in text


def test_random_filter_is_described_by_its_ranges() -> None:
    text = describe_lowpass(lowpass_to_dict(LowpassSpec("random", families=("butterworth",))))
    assert text == "random per example: butterworth (order 2-10, cutoff 0.6-1, zero phase; seed 0)"
    assert describe_lowpass("elliptic") == (
        "elliptic (order 8, cutoff 0.8, ripple 0.05 dB, attenuation 60 dB, zero phase)")
    assert describe_lowpass({"kind": "bessel", "zero_phase": False}) == (
        "bessel (order 8, cutoff 0.8, one pass)")
    assert describe_lowpass("none").startswith("no filter")


def test_mismatch_page_names_the_training_and_the_shown_filter() -> None:
    meta = {"ratio": 2, "sample_rate": 16000, "lowpass": "random",
            "lowpass_spec": lowpass_to_dict(LowpassSpec("random")), "test_lowpass": "ell4",
            "by_lowpass": {"ell4": {"model": {"snr": 1.0}, "cubic": {"snr": 2.0}, "n_files": 3,
                                    "lowpass_spec": lowpass_to_dict(LowpassSpec("elliptic",
                                                                                order=4))}}}
    shown = evaluation_meta(meta)
    assert shown["model trained on"].startswith("random per example")
    assert shown["low-res input of the samples and summary"] == (
        "ell4: elliptic (order 4, cutoff 0.8, ripple 0.05 dB, attenuation 60 dB, zero phase)")
    assert not any("{" in v for v in shown.values())
