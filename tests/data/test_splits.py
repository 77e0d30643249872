"""Every data config: validation is disjoint from test and from training, deterministic, and
the published test split is unchanged (tiny fake trees of every corpus, through the configs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hydra.utils import instantiate

from audio_superres.data.corpora import AudioFile, FolderCorpus, hold_out_validation
from audio_superres.data.demo_piano import DEMO_PIANO_TEST_PIECES
from audio_superres.data.demo_speech import DEMO_TEST_SPEAKERS
from audio_superres.data.vctk import (
    MULTI_HELD_OUT,
    MULTI_STANDARD_HELD_OUT,
    SINGLE_HELD_OUT_UTTERANCES,
    utterance_number,
)

from ..test_configs import compose_train, group_options
from .test_vctk import P225_NUMBERS, make_vctk


def write_tree(root: Path, groups: dict[str, int], ext: str = "wav", seconds: float = 0.1) -> Path:
    """`groups[name]` files of short noise under root/<name>/ (name "" = directly under root)."""
    rng = np.random.default_rng(0)
    for name, n in groups.items():
        for i in range(n):
            path = root / name / f"clip{i:02d}.{ext}" if name else root / f"take{i:02d}.{ext}"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, 0.1 * rng.standard_normal(round(seconds * 16000)), 16000)
    return root


def build(data: str, tmp_path: Path) -> tuple[Path, list[str]]:
    """A tiny tree for data config `data` and the overrides that point the config at it."""
    root = tmp_path / "corpus"
    if data == "folder":
        write_tree(root, {"anna": 12, "ben": 12, "cleo": 5})
        return root, ["data.test_speakers=[cleo]"]
    if data == "demo_speech":
        return write_tree(root, {**dict.fromkeys(DEMO_TEST_SPEAKERS, 3), "fr": 10, "nl": 10}), []
    if data == "demo_piano":
        pieces = {**dict.fromkeys(DEMO_PIANO_TEST_PIECES, 3), "bach_bwv846": 10, "joplin": 10}
        return write_tree(root, pieces, ext="flac"), []
    if data == "piano":
        return write_tree(root, {"": 20}), []
    if data == "vctk_single":
        return make_vctk(root, "0.92", ["p225"], {"p225": P225_NUMBERS}), []
    if data == "vctk_multi":
        return make_vctk(root, "0.80", per_speaker=2), []
    if data == "vctk_multi_standard":
        return make_vctk(root, "0.92", per_speaker=2), []
    raise AssertionError(f"no tiny tree for data={data}: add one to this test")


def published_test(data: str, files: list[str]) -> bool:
    """Whether `files` (test split, relative paths) is the split the corpus publishes."""
    first = {f.split("/")[-2] if "/" in f else "" for f in files}
    if data == "vctk_single":
        return sorted(utterance_number(f) for f in files) == list(SINGLE_HELD_OUT_UTTERANCES)
    if data == "vctk_multi":
        return sorted(first) == list(MULTI_HELD_OUT)
    if data == "vctk_multi_standard":
        return sorted(first) == list(MULTI_STANDARD_HELD_OUT)
    if data == "demo_speech":
        return first == set(DEMO_TEST_SPEAKERS)
    if data == "demo_piano":
        return first == set(DEMO_PIANO_TEST_PIECES)
    if data == "folder":
        return first == {"cleo"}
    return len(files) == 1  # piano: 6% of 20 recordings, by name


@pytest.mark.parametrize("data", group_options("data"))
def test_validation_is_disjoint_from_test_and_training(data, tmp_path):
    root, overrides = build(data, tmp_path)
    cfg = compose_train([f"data={data}", f"data.root={root}", *overrides], tmp_path)
    dm = instantiate(cfg.data)
    dm.setup("validate")
    split = {k: set(v) for k, v in dm.split_files().items()}
    assert split["val"], "every corpus validates on something"
    assert not split["val"] & split["test"]
    assert not split["val"] & split["train"] and not split["train"] & split["test"]
    assert published_test(data, sorted(split["test"]))
    # the validation loader reads exactly the val split
    assert {b["name"][0] for b in dm.val_dataloader()} == split["val"]
    if data != "piano":  # held-out utterances of training speakers (piano: own recordings)
        speaker = {
            dm.cache.entries[i].path: dm.cache.entries[i].speaker
            for i in range(len(dm.cache.entries))
        }
        assert {speaker[f] for f in split["val"]} <= {speaker[f] for f in split["train"]}
    # deterministic: the same split from the files in another order
    files = dm.corpus.files()
    again = dm.corpus.split(list(reversed(files)), val_files=dm.val_max_files)
    assert {dm.corpus.relative(f.path) for f in again["val"]} == split["val"]


def test_hold_out_validation_takes_turns_and_keeps_every_speaker(tmp_path):
    files = [AudioFile(tmp_path / s / f"{i}.wav", s) for s in "abcd" for i in range(30)]
    relative = lambda p: Path(p).relative_to(tmp_path).as_posix()  # noqa: E731
    train, val = hold_out_validation(files, 8, relative)
    assert len(val) == 8 and len(train) == 112
    assert sorted(f.speaker for f in val) == sorted("aabbccdd")  # two turns of four speakers
    # a tenth at most, and never a speaker's last file
    small = [AudioFile(tmp_path / "a" / "0.wav", "a"), AudioFile(tmp_path / "b" / "0.wav", "b")]
    assert hold_out_validation(small, 8, relative) == (small, [])
    _, val = hold_out_validation(files[:20], 8, relative)
    assert len(val) == 2
    # names only: a copy of the tree elsewhere gives the same files
    elsewhere = Path("/elsewhere")
    moved = [AudioFile(elsewhere / relative(f.path), f.speaker) for f in files]
    _, val_moved = hold_out_validation(moved, 8, lambda p: p.relative_to(elsewhere).as_posix())
    _, val = hold_out_validation(files, 8, relative)
    assert [f.path.relative_to(elsewhere) for f in val_moved] == [
        f.path.relative_to(tmp_path) for f in val
    ]


def test_folder_corpus_val_is_documented_in_the_split(tmp_path):
    root = write_tree(tmp_path / "c", {"anna": 20, "ben": 20, "cleo": 4})
    split = FolderCorpus(root, test_speakers=["cleo"]).split(val_files=3)
    assert len(split["val"]) == 3 and {f.speaker for f in split["test"]} == {"cleo"}
