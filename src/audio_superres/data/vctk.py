"""VCTK 0.80 and 0.92 with the splits of the literature (REFERENCE section 4).

Three splits, each computed from the files on disk and, by default (`strict=True`), checked
against the published one, so that a missing speaker or utterance is an error that names it
instead of a silently different split:

- ``single``: speaker p225; the 8 highest-numbered utterances (355 356 357 358 359 363 365 366
  on the real corpus) are the test set, the rest is training.
- ``multi`` (Kuleshov et al. 2017): the 109 speaker folders of VCTK 0.80, sorted; the first 100
  train, the last 9 (p347 p351 p360 p361 p362 p363 p364 p374 p376) are held out. On 0.92 the
  same 109 speakers are used: s5, added in 0.92, is not part of this split.
- ``multi_standard`` (NU-Wave, AP-BWE; VCTK 0.92): the 110 speakers without p280 and p315
  (their recordings have known problems: p280 has no mic2, p315 no transcripts), sorted; the
  first 100 train, the last 8 (p360 p361 p362 p363 p364 p374 p376 s5) are held out.

Both releases are read, detected from the tree: 0.80 ``wav48/pXXX/pXXX_NNN.wav`` and 0.92
``wav48_silence_trimmed/pXXX/pXXX_NNN_mic1.flac`` (or ``_mic2``, chosen by `mic`). `root` may be
the corpus folder itself or a folder holding it (e.g. ``data/VCTK/VCTK-Corpus/``).

Validation, in every split, is a few held-out utterances of the training speakers
(`corpora.hold_out_validation`; `data.val_max_files` of them, 8 for ``single``), never a test
file. The 2017 code validated and chose its checkpoint on the test speakers' files.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from audio_superres.data.corpora import (
    ALL_SPEAKERS,
    DEFAULT_VAL_FILES,
    AudioFile,
    Corpus,
    Split,
    check_split,
    hold_out_validation,
)
from audio_superres.errors import UserFacingError

__all__ = [
    "MULTI_HELD_OUT",
    "MULTI_STANDARD_EXCLUDED",
    "MULTI_STANDARD_HELD_OUT",
    "SINGLE_HELD_OUT_UTTERANCES",
    "SINGLE_SPEAKER",
    "SPLITS",
    "VCTKCorpus",
    "VCTKLayoutError",
    "VCTKSplitError",
    "VCTKTree",
    "VCTK_SPEAKERS_080",
    "VCTK_SPEAKERS_092",
    "find_vctk",
    "utterance_number",
]

DEFAULT_ROOT = Path("data/VCTK")
RELEASES = ("0.80", "0.92")
MICS = ("mic1", "mic2")
SPLITS = ("single", "multi", "multi_standard")

# The speaker folders of the releases (speaker-info.txt; 0.92 adds s5). Used to name what is
# missing from a tree, never to decide the split: that is computed from the folders on disk.
# fmt: off
VCTK_SPEAKERS_080: tuple[str, ...] = (
    "p225", "p226", "p227", "p228", "p229", "p230", "p231", "p232", "p233", "p234", "p236",
    "p237", "p238", "p239", "p240", "p241", "p243", "p244", "p245", "p246", "p247", "p248",
    "p249", "p250", "p251", "p252", "p253", "p254", "p255", "p256", "p257", "p258", "p259",
    "p260", "p261", "p262", "p263", "p264", "p265", "p266", "p267", "p268", "p269", "p270",
    "p271", "p272", "p273", "p274", "p275", "p276", "p277", "p278", "p279", "p280", "p281",
    "p282", "p283", "p284", "p285", "p286", "p287", "p288", "p292", "p293", "p294", "p295",
    "p297", "p298", "p299", "p300", "p301", "p302", "p303", "p304", "p305", "p306", "p307",
    "p308", "p310", "p311", "p312", "p313", "p314", "p315", "p316", "p317", "p318", "p323",
    "p326", "p329", "p330", "p333", "p334", "p335", "p336", "p339", "p340", "p341", "p343",
    "p345", "p347", "p351", "p360", "p361", "p362", "p363", "p364", "p374", "p376",
)
# fmt: on
VCTK_SPEAKERS_092: tuple[str, ...] = (*VCTK_SPEAKERS_080, "s5")

SINGLE_SPEAKER = "p225"
SINGLE_HELD_OUT_UTTERANCES = (355, 356, 357, 358, 359, 363, 365, 366)
MULTI_TRAIN_SPEAKERS = 100
MULTI_HELD_OUT = ("p347", "p351", "p360", "p361", "p362", "p363", "p364", "p374", "p376")
MULTI_STANDARD_HELD_OUT = ("p360", "p361", "p362", "p363", "p364", "p374", "p376", "s5")
MULTI_STANDARD_EXCLUDED = ("p280", "p315")
NOT_IN_MULTI = ("s5",)
"""Speakers of 0.92 that the original 109-speaker split does not know: left out of `multi`."""

_SPEAKER_DIR = re.compile(r"^[ps]\d+$")
_UTTERANCE = re.compile(r"^(?P<speaker>[ps]\d+)_(?P<number>\d+)(?:_(?P<mic>mic[12]))?\.[a-z0-9]+$")
_AUDIO_DIRS = {"0.80": "wav48", "0.92": "wav48_silence_trimmed"}


class VCTKLayoutError(UserFacingError, FileNotFoundError):
    """No VCTK tree (or two releases, ambiguously) under the given root."""


class VCTKSplitError(UserFacingError, ValueError):
    """The files on disk do not give the documented split (a speaker or utterance is missing)."""


@dataclass(frozen=True)
class VCTKTree:
    """Where a VCTK release lies: `audio_dir` holds one folder per speaker."""

    release: str
    corpus_dir: Path
    audio_dir: Path

    @property
    def speakers(self) -> tuple[str, ...]:
        """The speaker folders present, sorted (the original split sorts folder names)."""
        return tuple(
            sorted(
                e.name
                for e in self.audio_dir.iterdir()
                if e.is_dir() and _SPEAKER_DIR.match(e.name)
            )
        )

    def pattern(self, mic: str) -> re.Pattern[str]:
        """File names of one release and microphone: pXXX_NNN.wav or pXXX_NNN_micK.flac."""
        if self.release == "0.80":
            return re.compile(r"^(?P<speaker>[ps]\d+)_(?P<number>\d+)\.wav$")
        return re.compile(rf"^(?P<speaker>[ps]\d+)_(?P<number>\d+)_{mic}\.flac$")


def _release(release: str | float | None) -> str | None:
    """ "0.80"/"0.92" from a string or a YAML float (0.8, 0.92); None stays None."""
    if release is None:
        return None
    text = f"{release:.2f}" if isinstance(release, float) else str(release)
    if text not in RELEASES:
        raise ValueError(f"VCTK release must be one of {RELEASES} or None, got {release!r}")
    return text


def find_vctk(root: str | os.PathLike, release: str | float | None = None) -> VCTKTree:
    """Locate the VCTK tree in `root` or in one of its sub-folders (e.g. ``VCTK-Corpus/``).

    Detection looks for ``wav48_silence_trimmed/`` (0.92) and ``wav48/`` (0.80). Two releases
    under one root are an error unless `release` picks one, because silently reading the
    other would change every number.
    """
    root = Path(root)
    release = _release(release)
    if not root.is_dir():
        raise VCTKLayoutError(
            f"{root}: VCTK folder does not exist; download VCTK 0.92 with `make data-vctk` "
            f"(python -m audio_superres.data.download vctk --dest {root})"
        )
    candidates = [root] + sorted(
        e for e in root.iterdir() if e.is_dir() and not e.name.startswith(".")
    )
    found: list[VCTKTree] = []
    for folder in candidates:
        for rel, sub in _AUDIO_DIRS.items():
            if (folder / sub).is_dir() and (release is None or release == rel):
                found.append(VCTKTree(rel, folder, folder / sub))
    if not found:
        wanted = " or ".join(
            f"{sub}/ ({rel})"
            for rel, sub in _AUDIO_DIRS.items()
            if release is None or rel == release
        )
        raise VCTKLayoutError(
            f"{root}: no VCTK tree found (looked for {wanted} in it and in its sub-folders); "
            "download VCTK 0.92 with `make data-vctk`"
        )
    if len(found) > 1:
        where = ", ".join(f"{t.audio_dir} ({t.release})" for t in found)
        raise VCTKLayoutError(
            f"{root}: several VCTK trees found ({where}); choose one with data.corpus.release "
            "or point data.root at one of them"
        )
    return found[0]


def utterance_number(path: str | os.PathLike) -> int:
    """The utterance number of a VCTK file name (p225_366_mic1.flac -> 366)."""
    m = _UTTERANCE.match(Path(path).name)
    if not m:
        raise ValueError(f"{path}: not a VCTK utterance file name (pXXX_NNN[_micK].ext)")
    return int(m["number"])


def _names(items: Sequence[str], limit: int = 20) -> str:
    shown = " ".join(items[:limit])
    return shown + (f" ... ({len(items)} in all)" if len(items) > limit else "")


class VCTKCorpus(Corpus):
    """VCTK with one of the published splits (module docstring); see `split`.

    `test_speakers` is normally empty (the split's own held-out set). `"*"` sends every file
    to the test split (evaluation only) and a list of speakers gives a custom speaker split of
    the files of `split`. `strict=False` accepts a tree that differs from the real corpus (a
    subset, say) and only warns that the split differs from the documented one.
    """

    def __init__(
        self,
        root: str | os.PathLike = DEFAULT_ROOT,
        test_speakers: str | Sequence[str] | None = (),
        split: str = "multi",
        mic: str = "mic1",
        release: str | float | None = None,
        trim_silence: bool = False,
        strict: bool = True,
        download: bool = False,
        on_bad_file: str = "error",
    ) -> None:
        super().__init__(root, test_speakers or ())
        if split not in SPLITS:
            raise ValueError(f"VCTK split must be one of {SPLITS}, got {split!r}")
        if mic not in MICS:
            raise ValueError(f"VCTK mic must be one of {MICS}, got {mic!r}")
        self.split_name = split
        self.mic = mic
        self.release = _release(release)
        self.trim_silence = bool(trim_silence)
        self.strict = bool(strict)
        self.download = bool(download)
        self.on_bad_file = on_bad_file
        self._tree: VCTKTree | None = None

    # -- where the files are ------------------------------------------------------------------

    @property
    def tree(self) -> VCTKTree:
        """The detected release and folders (looked up once)."""
        if self._tree is None:
            self._tree = find_vctk(self.root, self.release)
        return self._tree

    @property
    def name(self) -> str:
        """e.g. ``vctk0.92-mic1-single``: caches of different splits and mics never mix."""
        try:
            tree = self.tree
        except (VCTKLayoutError, ValueError):
            return f"vctk-{self.split_name}"
        mic = f"-{self.mic}" if tree.release == "0.92" else ""
        return f"vctk{tree.release}{mic}-{self.split_name}"

    def prepare(self) -> None:
        """Download VCTK 0.92 if asked to (`download=True`), then check the split.

        The check only lists files, so a missing speaker or utterance is reported before the
        (long) cache preparation rather than after it.
        """
        if self.download:
            try:
                find_vctk(self.root, self.release)
            except VCTKLayoutError:
                from audio_superres.data.download import fetch

                fetch("vctk", self.root)
        self.split()

    def _speakers(self) -> list[str]:
        """The speaker folders that `split_name` reads, after checking none is missing."""
        tree = self.tree
        present = tree.speakers
        if self.split_name == "single":
            if SINGLE_SPEAKER not in present:
                raise VCTKSplitError(
                    f"{tree.audio_dir}: speaker folder {SINGLE_SPEAKER} is missing; the "
                    "single-speaker split is p225"
                )
            return [SINGLE_SPEAKER]
        if self.split_name == "multi":
            expected = VCTK_SPEAKERS_080
            left_out: tuple[str, ...] = NOT_IN_MULTI
            need = "the 109 speakers of VCTK 0.80"
        else:
            expected = VCTK_SPEAKERS_092
            left_out = MULTI_STANDARD_EXCLUDED
            need = "the 110 speakers of VCTK 0.92"
            if tree.release != "0.92" and self.strict:
                raise VCTKSplitError(
                    f"{tree.audio_dir}: the multi_standard split is defined on VCTK 0.92 (it "
                    f"holds out s5), this is VCTK {tree.release}; download 0.92 with "
                    "`make data-vctk`, or use data=vctk_multi"
                )
        missing = sorted(set(expected) - set(present))
        extra = sorted(set(present) - set(expected) - set(NOT_IN_MULTI))
        if (missing or extra) and self.strict:
            problems = []
            if missing:
                problems.append(f"{len(missing)} missing: {_names(missing)}")
            if extra:
                problems.append(f"{len(extra)} unexpected: {_names(extra)}")
            raise VCTKSplitError(
                f"{tree.audio_dir}: the {self.split_name} split needs {need}, found "
                f"{len(present)} speaker folders ({'; '.join(problems)}); re-extract the "
                "corpus, or set data.corpus.strict=false to split what is there"
            )
        return [s for s in present if s not in left_out]

    def files(self) -> list[AudioFile]:
        """The files of the split's speakers (only p225 for `single`), sorted."""
        tree = self.tree  # VCTKLayoutError (a FileNotFoundError) says how to get the corpus
        pattern = tree.pattern(self.mic)
        out: list[AudioFile] = []
        empty: list[str] = []
        for speaker in self._speakers():
            folder = tree.audio_dir / speaker
            names = sorted(
                n for n in os.listdir(folder) if (m := pattern.match(n)) and m["speaker"] == speaker
            )
            if not names:
                empty.append(speaker)
            out.extend(AudioFile(folder / n, speaker) for n in names)
        if empty:
            what = "*.wav" if tree.release == "0.80" else f"*_{self.mic}.flac"
            hint = (
                " (p280 has no mic2 recordings in VCTK 0.92; use mic1)"
                if ("p280" in empty and self.mic == "mic2")
                else ""
            )
            message = f"{tree.audio_dir}: no {what} files for speaker(s) {_names(empty)}{hint}"
            if self.strict or not out:
                raise VCTKSplitError(message)
            warnings.warn(message + "; they are left out", stacklevel=2)
        out.sort(key=lambda f: (f.speaker, self.relative(f.path)))
        return out

    # -- the split ------------------------------------------------------------------------------

    def split(
        self, files: Sequence[AudioFile] | None = None, val_files: int = DEFAULT_VAL_FILES
    ) -> Split:
        """The published split of `files` (default: `self.files()`), computed from them.

        `single` tests on the 8 highest utterance numbers of p225; `multi` and
        `multi_standard` sort the speakers and test on all but the first 100. With
        `strict=True` the test set must be the documented one (constants of this module).
        Validation is `val_files` utterances of the training speakers (`hold_out_validation`);
        the 2017 code validated on its test files.
        """
        files = list(self.files() if files is None else files)
        if self.test_speakers == ALL_SPEAKERS or self.test_speakers:
            return check_split(super().split(files, val_files), self.root)
        if self.split_name == "single":
            held = self._single_held_out(files)
            train = [f for f in files if utterance_number(f.path) not in held]
            test = [f for f in files if utterance_number(f.path) in held]
        else:
            speakers = self.held_out_speakers(files)
            train = [f for f in files if f.speaker not in speakers]
            test = [f for f in files if f.speaker in speakers]
        # validation: held-out utterances of the training speakers, never a test file
        train, val = hold_out_validation(train, val_files, self.relative)
        return check_split({"train": train, "val": val, "test": test}, self.root)

    def _single_held_out(self, files: Sequence[AudioFile]) -> set[int]:
        """The 8 highest utterance numbers among `files` (all of speaker p225)."""
        speakers = sorted({f.speaker for f in files})
        if speakers != [SINGLE_SPEAKER]:
            raise VCTKSplitError(
                f"{self.root}: the single-speaker split expects only {SINGLE_SPEAKER}, got "
                f"{_names(speakers)}"
            )
        numbers = sorted({utterance_number(f.path) for f in files})
        n = len(SINGLE_HELD_OUT_UTTERANCES)
        if len(numbers) <= n:
            raise VCTKSplitError(
                f"{self.root}: {SINGLE_SPEAKER} has {len(numbers)} utterances; the single-speaker "
                f"split holds out {n} and needs more to train on"
            )
        held = numbers[-n:]
        expected = list(SINGLE_HELD_OUT_UTTERANCES)
        if held != expected:
            missing = [f"{SINGLE_SPEAKER}_{k:03d}" for k in expected if k not in numbers]
            extra = [f"{SINGLE_SPEAKER}_{k:03d}" for k in held if k not in expected]
            message = (
                f"{self.root}: the {n} highest-numbered {SINGLE_SPEAKER} utterances on disk are "
                f"{held}, not the documented {expected}"
                + (f"; missing: {' '.join(missing)}" if missing else "")
                + (f"; not in the real corpus: {' '.join(extra)}" if extra else "")
            )
            if self.strict:
                raise VCTKSplitError(message + " (data.corpus.strict=false accepts this)")
            warnings.warn(message, stacklevel=3)
        return set(held)

    def held_out_speakers(self, files: Sequence[AudioFile] | None = None) -> list[str]:
        """The held-out speakers: the last 9 (multi) or 8 (multi_standard) sorted speakers.

        On a complete tree these are the speakers after the first 100; with `strict=False` a
        partial tree still holds out its last 9 or 8 (with a warning).
        """
        if self.split_name == "single":
            return [SINGLE_SPEAKER]
        files = list(self.files() if files is None else files)
        speakers = sorted({f.speaker for f in files})
        expected = list(MULTI_HELD_OUT if self.split_name == "multi" else MULTI_STANDARD_HELD_OUT)
        total = MULTI_TRAIN_SPEAKERS + len(expected)
        if len(speakers) != total or speakers[MULTI_TRAIN_SPEAKERS:] != expected:
            message = (
                f"{self.root}: the {self.split_name} split needs {total} speakers (first "
                f"{MULTI_TRAIN_SPEAKERS} train, last {len(expected)} held out: "
                f"{' '.join(expected)}); found {len(speakers)}"
            )
            missing = sorted(set(expected) - set(speakers))
            if missing:
                message += f", missing {' '.join(missing)}"
            if self.strict:
                raise VCTKSplitError(message + " (data.corpus.strict=false accepts this)")
            if len(speakers) <= len(expected):
                raise VCTKSplitError(
                    f"{message}; with {len(expected)} held out, no speaker is left to train on"
                )
            warnings.warn(message + f"; holding out the last {len(expected)}", stacklevel=3)
        return speakers[-len(expected) :]

    def __repr__(self) -> str:
        return (
            f"VCTKCorpus(root={str(self.root)!r}, split={self.split_name!r}, mic={self.mic!r}, "
            f"release={self.release!r}, strict={self.strict})"
        )
