"""Piano: the deterministic 88/6/6 split by recording, and a small real demo_piano build."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio_superres.data import DemoPianoCorpus, PianoCorpus
from audio_superres.data.demo_piano import (
    DEMO_PIANO_TEST_PIECES,
    PIECES,
    SOUNDFONT,
    DemoPianoMissingError,
    build_demo_piano,
    is_complete,
)
from audio_superres.data.piano import split_by_name

SONATAS = [f"BeethovenPianoSonataNo.{k}/sonata{k:02d}.ogg" for k in range(1, 33)]


def write_recordings(root: Path, names: list[str], seconds: float = 0.05) -> Path:
    t = np.arange(round(seconds * 16000)) / 16000
    for i, name in enumerate(names):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        fmt = {"ogg": "OGG", "flac": "FLAC", "wav": "WAV"}[name.rsplit(".", 1)[1]]
        subtype = "VORBIS" if fmt == "OGG" else "PCM_16"
        sf.write(path, 0.3 * np.sin(2 * np.pi * (220 + i) * t), 16000, format=fmt, subtype=subtype)
    return root


def test_split_by_name_is_88_6_6_and_a_function_of_the_names_only() -> None:
    names = [n.rsplit(".", 1)[0] for n in SONATAS]
    split = split_by_name(names)
    assert [len(split[k]) for k in ("train", "val", "test")] == [28, 2, 2]
    assert sorted(split["train"] + split["val"] + split["test"]) == sorted(names)
    assert not set(split["train"]) & set(split["test"]) and not set(split["val"]) & set(
        split["test"]
    )
    assert split_by_name(list(reversed(names))) == split  # order of listing does not matter
    assert split_by_name(names * 2) == split
    # pinned: the split of these names must never change between versions or machines
    assert split["test"] == [
        "BeethovenPianoSonataNo.10/sonata10",
        "BeethovenPianoSonataNo.20/sonata20",
    ]
    assert split["val"] == [
        "BeethovenPianoSonataNo.21/sonata21",
        "BeethovenPianoSonataNo.26/sonata26",
    ]
    assert len(split_by_name([f"r{i}" for i in range(100)])["test"]) == 6
    tiny = split_by_name(["a", "b", "c"])
    assert [len(tiny[k]) for k in ("train", "val", "test")] == [1, 1, 1]
    with pytest.raises(ValueError, match="summing to 1"):
        split_by_name(names, (0.8, 0.1, 0.2))


def test_piano_corpus_splits_recordings_deterministically(tmp_path: Path) -> None:
    root = write_recordings(tmp_path / "piano", SONATAS[:8] + ["extra/take.flac", "solo.wav"])
    (root / "notes.txt").write_text("not audio")
    (root / ".hidden.wav").write_bytes(b"")
    corpus = PianoCorpus(root)
    files = corpus.files()
    assert len(files) == 10 and files[0].speaker == "BeethovenPianoSonataNo.1/sonata01"
    split = corpus.split()
    assert [len(split[k]) for k in ("train", "val", "test")] == [8, 1, 1]
    groups = {k: {f.speaker for f in v} for k, v in split.items()}
    assert not groups["train"] & groups["test"] and not groups["val"] & groups["test"]
    # same split from a copy elsewhere, and from the cached file list the DataModule passes
    copy = PianoCorpus(shutil.copytree(root, tmp_path / "copy"))
    assert {k: {f.speaker for f in v} for k, v in copy.split().items()} == groups
    assert corpus.split(list(reversed(files))) == split
    held = PianoCorpus(root, test_speakers=["solo"]).split()
    assert [f.speaker for f in held["test"]] == ["solo"] and len(held["val"]) == 1
    assert not {f.speaker for f in held["val"]} & {"solo"}
    with pytest.raises(ValueError, match="no audio files found"):
        PianoCorpus(root, extensions=["mp3"]).files()


def test_same_recording_in_two_formats_is_an_error(tmp_path: Path) -> None:
    root = write_recordings(tmp_path / "p", ["a.wav", "a.flac", "b.wav"])
    with pytest.raises(ValueError, match=r"\['a'\] exist in several formats"):
        PianoCorpus(root).files()


def test_demo_piano_missing_tools_are_named(tmp_path: Path) -> None:
    with pytest.raises(DemoPianoMissingError, match="fluid-soundfont-gm"):
        build_demo_piano(tmp_path / "out", pieces=PIECES[:1], soundfont=tmp_path / "none.sf2")


needs_fluidsynth = pytest.mark.skipif(
    shutil.which("fluidsynth") is None or not SOUNDFONT.is_file(),
    reason="fluidsynth / fluid-soundfont-gm not installed (make apt)",
)


@needs_fluidsynth
def test_small_real_demo_piano_build_is_complete_and_idempotent(tmp_path: Path, capsys) -> None:
    pytest.importorskip("music21")
    out = tmp_path / "demo_piano"
    piece = next(p for p in PIECES if p.id == "schoenberg_op19_6")  # the shortest piece
    manifest = build_demo_piano(out, pieces=[piece], num_workers=1)
    assert manifest == json.loads((out / "manifest.json").read_text())
    (record,) = manifest["pieces"]
    assert record["id"] == piece.id and 10 < record["duration_s"] < 120
    for rel in record["files"]:
        info = sf.info(str(out / rel))
        assert (info.samplerate, info.channels, info.subtype) == (48000, 1, "PCM_24")
        assert 5.0 <= info.duration <= 15.0 or len(record["files"]) == 1
    x, sr = sf.read(str(out / record["files"][0]))
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / sr)
    assert spectrum[(freqs > 2000) & (freqs < 8000)].sum() > 1e-3 * spectrum.sum()  # 16 kHz task
    assert is_complete(out, pieces=[piece]) and not is_complete(out)
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    capsys.readouterr()
    assert build_demo_piano(out, pieces=[piece]) == manifest
    assert "up to date" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == mtimes
    corpus = DemoPianoCorpus(out, test_speakers=[piece.id])
    assert {f.speaker for f in corpus.files()} == {piece.id}
    assert corpus.name == "demo_piano"
    assert DemoPianoCorpus().test_speakers == DEMO_PIANO_TEST_PIECES
    assert set(DEMO_PIANO_TEST_PIECES) <= {p.id for p in PIECES}


def test_datamodule_validates_on_the_val_recordings_and_tests_on_the_test_ones(tmp_path) -> None:
    from functools import partial

    from audio_superres.data import SuperResDataModule

    root = write_recordings(tmp_path / "piano", SONATAS[:10], seconds=0.2)
    split = PianoCorpus(root).split()
    dm = SuperResDataModule(
        corpus=partial(PianoCorpus), root=str(root), test_speakers=[], sample_rate=16000,
        ratio=4, patch_len=1024, batch_size=2, cache_dir=str(tmp_path / "cache"),
        prepare_workers=1,
    )
    dm.prepare_data()
    dm.setup("fit")
    names = lambda ids: {dm.cache.entries[i].speaker for i in ids}  # noqa: E731
    assert names(dm.val_indices) == {f.speaker for f in split["val"]}
    assert names(dm.test_indices) == {f.speaker for f in split["test"]}
    assert not names(dm.val_indices) & names(dm.test_indices)
