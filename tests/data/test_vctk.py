"""VCTK: release detection and the three published splits on fake trees of both releases."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio_superres.data import SuperResDataModule, VCTKCorpus
from audio_superres.data.vctk import (
    MULTI_HELD_OUT,
    MULTI_STANDARD_EXCLUDED,
    MULTI_STANDARD_HELD_OUT,
    SINGLE_HELD_OUT_UTTERANCES,
    VCTK_SPEAKERS_080,
    VCTK_SPEAKERS_092,
    VCTKLayoutError,
    VCTKSplitError,
    find_vctk,
    utterance_number,
)

SR = 48_000
# p225's utterance numbers in the fake tree: gaps like the real corpus (which has no 360-362,
# 364), a few low numbers, and the documented held-out eight at the top.
P225_NUMBERS = (1, 2, 3, 4, 5, 6, 340, 352, 354, *SINGLE_HELD_OUT_UTTERANCES)


def _tone(n: int, seed: int, seconds: float = 0.02) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * SR)) / SR
    return (
        0.2 * np.sin(2 * np.pi * (200 + 50 * n) * t) + 0.01 * rng.standard_normal(len(t))
    ).astype(np.float32)


def make_vctk(
    root: Path,
    release: str,
    speakers: Iterable[str] | None = None,
    numbers: dict[str, Iterable[int]] | None = None,
    per_speaker: int = 1,
    seconds: float = 0.02,
) -> Path:
    """A fake VCTK tree: 0.80 under root/VCTK-Corpus/wav48, 0.92 under root/wav48_silence_trimmed.

    0.92 gets both microphones, except p280 (no mic2, as in the real corpus).
    """
    if speakers is None:
        speakers = VCTK_SPEAKERS_080 if release == "0.80" else VCTK_SPEAKERS_092
    numbers = numbers or {}
    audio = root / "VCTK-Corpus" / "wav48" if release == "0.80" else root / "wav48_silence_trimmed"
    for s, speaker in enumerate(speakers):
        folder = audio / speaker
        folder.mkdir(parents=True, exist_ok=True)
        for n in numbers.get(speaker, range(1, per_speaker + 1)):
            x = _tone(n, s, seconds)
            if release == "0.80":
                sf.write(folder / f"{speaker}_{n:03d}.wav", x, SR, subtype="PCM_16")
            else:
                for mic in ("mic1", "mic2"):
                    if speaker == "p280" and mic == "mic2":
                        continue
                    sf.write(folder / f"{speaker}_{n:03d}_{mic}.flac", x, SR, subtype="PCM_16")
    (audio.parent / "speaker-info.txt").write_text("ID AGE GENDER ACCENTS\n")
    return root


def speakers_of(files) -> set[str]:
    return {f.speaker for f in files}


@pytest.mark.parametrize("release", ["0.80", "0.92"])
def test_single_holds_out_the_8_highest_utterances_of_p225(tmp_path: Path, release: str) -> None:
    root = make_vctk(tmp_path / "VCTK", release, ["p225", "p226"], {"p225": P225_NUMBERS})
    corpus = VCTKCorpus(root, split="single")
    files = corpus.files()
    assert speakers_of(files) == {"p225"} and len(files) == len(P225_NUMBERS)
    split = corpus.split()
    test = sorted(utterance_number(f.path) for f in split["test"])
    assert test == list(SINGLE_HELD_OUT_UTTERANCES) == [355, 356, 357, 358, 359, 363, 365, 366]
    # validation: held-out utterances of p225 (at most a tenth of the 9 others: one), not test
    assert len(split["val"]) == 1
    assert sorted(utterance_number(f.path) for f in split["train"] + split["val"]) == [
        1,
        2,
        3,
        4,
        5,
        6,
        340,
        352,
        354,
    ]
    assert not {f.path for f in split["train"]} & {f.path for f in split["test"]}
    assert not {f.path for f in split["val"]} & {f.path for f in split["test"]}
    if release == "0.92":
        assert all(f.path.name.endswith("_mic1.flac") for f in files)


def test_single_with_a_missing_utterance_names_it(tmp_path: Path) -> None:
    numbers = [n for n in P225_NUMBERS if n != 366]
    root = make_vctk(tmp_path / "VCTK", "0.92", ["p225"], {"p225": numbers})
    with pytest.raises(VCTKSplitError, match=r"missing: p225_366"):
        VCTKCorpus(root, split="single").split()
    with pytest.raises(VCTKSplitError, match=r"missing: p225_366"):
        VCTKCorpus(root, split="single").prepare()  # before any decoding
    with pytest.warns(UserWarning, match="not the documented"):
        split = VCTKCorpus(root, split="single", strict=False).split()
    assert sorted(utterance_number(f.path) for f in split["test"]) == [
        354,
        355,
        356,
        357,
        358,
        359,
        363,
        365,
    ]


@pytest.mark.parametrize("release", ["0.80", "0.92"])
def test_multi_is_sorted_first_100_train_last_9_held_out(tmp_path: Path, release: str) -> None:
    root = make_vctk(tmp_path / "VCTK", release, per_speaker=2)
    corpus = VCTKCorpus(root, split="multi")
    split = corpus.split()
    train, test = speakers_of(split["train"]), speakers_of(split["test"])
    assert sorted(test) == list(MULTI_HELD_OUT)
    assert test == {"p347", "p351", "p360", "p361", "p362", "p363", "p364", "p374", "p376"}
    assert len(train) == 100 and not train & test
    assert train | test == set(VCTK_SPEAKERS_080) and "s5" not in train | test
    # validation: 20 utterances (a tenth of 200) of 20 different training speakers
    assert len(split["train"]) == 180 and len(split["val"]) == 20 and len(split["test"]) == 18
    assert len(speakers_of(split["val"])) == 20 and speakers_of(split["val"]) <= train
    assert corpus.held_out_speakers() == list(MULTI_HELD_OUT)


def test_multi_standard_holds_out_the_nu_wave_speakers(tmp_path: Path) -> None:
    root = make_vctk(tmp_path / "VCTK", "0.92")
    split = VCTKCorpus(root, split="multi_standard").split()
    train, test = speakers_of(split["train"]), speakers_of(split["test"])
    assert sorted(test) == list(MULTI_STANDARD_HELD_OUT)
    assert test == {"p360", "p361", "p362", "p363", "p364", "p374", "p376", "s5"}
    assert len(train) == 100 and not train & test
    assert not (train | test) & set(MULTI_STANDARD_EXCLUDED)


def test_mic2_files_and_p280(tmp_path: Path) -> None:
    root = make_vctk(tmp_path / "VCTK", "0.92")
    standard = VCTKCorpus(root, split="multi_standard", mic="mic2")
    assert all(f.path.name.endswith("_mic2.flac") for f in standard.files())
    assert len(standard.split()["test"]) == 8
    with pytest.raises(VCTKSplitError, match=r"no \*_mic2.flac files for speaker\(s\) p280"):
        VCTKCorpus(root, split="multi", mic="mic2").files()


def test_missing_and_unexpected_speakers_are_listed(tmp_path: Path) -> None:
    speakers = [s for s in VCTK_SPEAKERS_080 if s not in ("p300", "p376")]
    root = make_vctk(tmp_path / "VCTK", "0.80", [*speakers, "p999"])
    with pytest.raises(VCTKSplitError) as err:
        VCTKCorpus(root, split="multi").files()
    message = str(err.value)
    assert "needs the 109 speakers" in message and "found 108 speaker folders" in message
    assert "2 missing: p300 p376" in message and "1 unexpected: p999" in message
    with pytest.raises(VCTKSplitError, match="VCTK 0.92"):
        VCTKCorpus(root, split="multi_standard").files()
    shutil.rmtree(root / "VCTK-Corpus" / "wav48" / "p999")
    with pytest.warns(UserWarning, match="missing p376"):
        split = VCTKCorpus(root, split="multi", strict=False).split()
    assert len(speakers_of(split["test"])) == 9 and "p374" in speakers_of(split["test"])


def test_empty_speaker_folder_counts_as_missing(tmp_path: Path) -> None:
    root = make_vctk(tmp_path / "VCTK", "0.92")
    for f in (root / "wav48_silence_trimmed" / "p226").iterdir():
        f.unlink()
    with pytest.raises(VCTKSplitError, match=r"no \*_mic1.flac files for speaker\(s\) p226"):
        VCTKCorpus(root, split="multi").files()


def test_release_detection(tmp_path: Path) -> None:
    old = make_vctk(tmp_path / "old", "0.80", ["p225"])
    tree = find_vctk(old)  # the folder holding VCTK-Corpus/
    assert tree.release == "0.80" and tree.audio_dir == old / "VCTK-Corpus" / "wav48"
    assert find_vctk(old / "VCTK-Corpus").audio_dir == tree.audio_dir  # the corpus itself
    new = make_vctk(tmp_path / "new", "0.92", ["p225"])
    assert find_vctk(new).release == "0.92"
    both = make_vctk(make_vctk(tmp_path / "both", "0.80", ["p225"]), "0.92", ["p225"])
    with pytest.raises(VCTKLayoutError, match="several VCTK trees"):
        find_vctk(both)
    assert find_vctk(both, release="0.80").release == "0.80"
    (tmp_path / "empty").mkdir()
    with pytest.raises(VCTKLayoutError, match="no VCTK tree found.*make data-vctk"):
        VCTKCorpus(tmp_path / "empty").files()
    with pytest.raises(VCTKLayoutError, match="does not exist"):
        VCTKCorpus(tmp_path / "nowhere").prepare()
    with pytest.raises(ValueError, match="split must be one of"):
        VCTKCorpus(new, split="multispeaker")


def test_names_star_and_custom_speakers(tmp_path: Path) -> None:
    root = make_vctk(tmp_path / "VCTK", "0.92", ["p225", "p226", "p227"], {"p225": P225_NUMBERS})
    assert VCTKCorpus(root, split="single").name == "vctk0.92-mic1-single"
    assert VCTKCorpus(root, split="single", mic="mic2").name == "vctk0.92-mic2-single"
    assert VCTKCorpus(tmp_path / "nowhere", split="multi").name == "vctk-multi"
    everything = VCTKCorpus(root, test_speakers="*", split="single").split()
    assert everything["train"] == [] and len(everything["test"]) == len(P225_NUMBERS)


def test_single_through_the_datamodule_at_16_and_48_khz(tmp_path: Path) -> None:
    root = make_vctk(tmp_path / "VCTK", "0.92", ["p225"], {"p225": P225_NUMBERS}, seconds=0.1)
    for sample_rate in (16_000, 48_000):
        dm = SuperResDataModule(
            corpus=lambda **kw: VCTKCorpus(split="single", **kw),
            root=str(root),
            test_speakers=[],
            sample_rate=sample_rate,
            ratio=4,
            patch_len=1024,
            batch_size=2,
            patches_per_epoch=4,
            cache_dir=str(tmp_path / "cache"),
            prepare_workers=1,
        )
        dm.prepare_data()
        dm.setup("fit")
        assert dm.cache is not None and dm.cache.sample_rate == sample_rate
        held = sorted(utterance_number(dm.cache.entries[i].path) for i in dm.test_indices)
        assert held == list(SINGLE_HELD_OUT_UTTERANCES)
        assert len(dm.train_indices) + len(dm.val_indices) == len(P225_NUMBERS) - 8
        assert dm.cache.entries[0].length == round(0.1 * sample_rate)
