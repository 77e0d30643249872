"""FolderCorpus listing and the speaker split."""

from __future__ import annotations

from pathlib import Path

import pytest

from audio_superres.data import AudioFile, Corpus, FolderCorpus
from audio_superres.data.audio_io import write_audio


def test_files_are_recursive_sorted_and_skip_non_audio(folder_corpus: Path) -> None:
    files = FolderCorpus(folder_corpus).files()
    rel = [f.path.relative_to(folder_corpus).as_posix() for f in files]
    assert rel == [
        "alice/a1.wav",
        "alice/a2.wav",
        "alice/a3.flac",
        "bob/b1.wav",
        "bob/b3.WAV",
        "bob/session/b2.wav",
        "carol/c1.wav",
        "carol/c2.wav",
        "carol/c3.wav",
    ]
    assert {f.speaker for f in files} == {"alice", "bob", "carol"}
    assert all(isinstance(f, AudioFile) for f in files)
    assert files == FolderCorpus(folder_corpus).files()  # deterministic


def test_extensions_filter_case_insensitively(folder_corpus: Path) -> None:
    assert [f.path.name for f in FolderCorpus(folder_corpus, extensions=["FLAC"]).files()] == [
        "a3.flac"
    ]


def test_files_directly_under_root_are_one_speaker(tmp_path: Path, tones) -> None:
    root = tmp_path / "solo_voice"
    write_audio(root / "x.wav", tones(0.2, 16000), 16000)
    write_audio(root / "y.wav", tones(0.2, 16000), 16000)
    corpus = FolderCorpus(root)
    assert [f.speaker for f in corpus.files()] == ["solo_voice", "solo_voice"]
    assert corpus.name == "solo_voice"


def test_missing_root_and_no_audio_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere: corpus folder does not exist"):
        FolderCorpus(tmp_path / "nowhere").files()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty: no audio files found \(looked for .wav, .flac"):
        FolderCorpus(tmp_path / "empty").files()
    with pytest.raises(TypeError, match="abstract"):
        Corpus(tmp_path)  # type: ignore[abstract]


def test_split_by_speaker(folder_corpus: Path) -> None:
    split = FolderCorpus(folder_corpus, test_speakers=["carol"]).split()
    train = {f.speaker for f in split["train"]}
    test = {f.speaker for f in split["test"]}
    assert train == {"alice", "bob"} and test == {"carol"}
    assert {f.speaker for f in split["val"]} <= {"alice", "bob"} and len(split["val"]) == 1
    assert len(split["train"]) + len(split["val"]) + len(split["test"]) == 9
    two = FolderCorpus(folder_corpus, test_speakers="bob, carol").split()
    assert {f.speaker for f in two["test"]} == {"bob", "carol"}
    assert not {f.speaker for f in two["train"]} & {f.speaker for f in two["test"]}


def test_star_puts_everything_in_test(folder_corpus: Path) -> None:
    split = FolderCorpus(folder_corpus, test_speakers="*").split()
    assert split["train"] == [] and len(split["test"]) == 9


def test_unknown_held_out_speaker_lists_the_speakers(folder_corpus: Path) -> None:
    corpus = FolderCorpus(folder_corpus, test_speakers=["carol", "dave"])
    with pytest.raises(ValueError, match=r"\['dave'\] not found; speakers found: \['alice', "):
        corpus.split()
