"""Corpora: which audio files exist, who speaks in each, and how they are split.

A corpus only lists files; decoding and resampling happen once, in `data.cache`. The default
split is by speaker so that evaluation measures generalisation to unseen voices (REFERENCE
section 4); corpora whose published split is not by speaker (VCTK single-speaker holds out
utterances, piano holds out recordings) override `Corpus.split`.

Validation is never a test file (REFERENCE section 4): unless a corpus has a validation group
of its own (piano), `hold_out_validation` takes a few utterances of the training speakers,
chosen from SHA-256 hashes of their relative paths, so the split is the same on every machine.
"""

from __future__ import annotations

import hashlib
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from audio_superres.errors import DataError, PathNotFoundError

__all__ = [
    "ALL_SPEAKERS",
    "DEFAULT_VAL_FILES",
    "SPLIT_NAMES",
    "AudioFile",
    "Corpus",
    "FolderCorpus",
    "Split",
    "check_split",
    "hold_out_validation",
]

ALL_SPEAKERS = "*"
"""`test_speakers` value that sends every file to the test split (evaluation-only corpora)."""

SPLIT_NAMES = ("train", "val", "test")
"""Keys of a split; "val" is disjoint from "test" (and from "train")."""

DEFAULT_VAL_FILES = 32
"""Training-speaker utterances held out for validation when no number is given."""
VAL_SHARE_DIVISOR = 10
"""Validation takes at most 1/10 of the training files (`hold_out_validation`)."""


@dataclass(frozen=True)
class AudioFile:
    """One audio file of a corpus and the speaker (or recording group) it belongs to."""

    path: Path
    speaker: str


def _normalise_speakers(test_speakers: str | Iterable[str] | None) -> str | tuple[str, ...]:
    """Accept "*", a comma-separated string, or any iterable (Hydra passes ListConfig)."""
    if test_speakers is None:
        return ()
    if isinstance(test_speakers, str):
        if test_speakers.strip() == ALL_SPEAKERS:
            return ALL_SPEAKERS
        return tuple(s.strip() for s in test_speakers.split(",") if s.strip())
    return tuple(str(s) for s in test_speakers)


Split = dict[str, list[AudioFile]]
"""{"train": [...], "val": [...], "test": [...]} (see SPLIT_NAMES)."""


def _hash_rank(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def hold_out_validation(
    train: Sequence[AudioFile], n_files: int, relative: Callable[[Path], str]
) -> tuple[list[AudioFile], list[AudioFile]]:
    """Move up to `n_files` utterances of the training speakers to validation: (train, val).

    At most a tenth of the training files (at least one) move, so a small corpus keeps most of
    its training data. Speakers take turns (ordered by the SHA-256 of their name, so not always
    the alphabetically first ones), each giving its files in SHA-256 order of their relative
    path (`relative`), and each keeping at least one file for training. Depends on nothing but
    the names: no seed, no file order, the same split on every machine.
    """
    by_speaker: dict[str, list[AudioFile]] = {}
    for f in train:
        by_speaker.setdefault(f.speaker, []).append(f)
    queues = [
        sorted(files, key=lambda f: (_hash_rank(relative(f.path)), relative(f.path)))
        for _, files in sorted(by_speaker.items(), key=lambda kv: (_hash_rank(kv[0]), kv[0]))
    ]
    n_files = min(n_files, max(1, len(train) // VAL_SHARE_DIVISOR)) if train else 0
    chosen: set[Path] = set()
    while len(chosen) < n_files and any(len(q) > 1 for q in queues):
        for queue in queues:
            if len(chosen) < n_files and len(queue) > 1:
                chosen.add(queue.pop(0).path)
    return [f for f in train if f.path not in chosen], [f for f in train if f.path in chosen]


def check_split(split: Split, where: object = "") -> Split:
    """Return `split` after checking it: keys "train", "val", "test", no file in two of them.

    Corpora that override `Corpus.split` call this, so a bug in a split rule fails loudly
    instead of evaluating on training data.
    """
    prefix = f"{where}: " if where else ""
    if sorted(split) != sorted(SPLIT_NAMES):
        raise ValueError(f"{prefix}a split needs keys {list(SPLIT_NAMES)}, got {sorted(split)}")
    seen: dict[Path, str] = {}
    for name in SPLIT_NAMES:
        for f in split.get(name, []):
            if f.path in seen:
                raise ValueError(f"{prefix}{f.path} is in both {seen[f.path]!r} and {name!r}")
            seen[f.path] = name
    return split


class Corpus(ABC):
    """Base class: a root folder of audio files, grouped by speaker.

    Subclasses implement `files()`; `prepare()` may build or download the data (it runs once,
    on one process, before `files()` is used). `split()` holds out `test_speakers`; subclasses
    whose published split is another rule override it (returning the keys of SPLIT_NAMES,
    checked by `check_split`) and must compute it from the files they are given, because the
    DataModule passes the files of the cache, not a fresh listing.
    """

    trim_silence: bool = False
    """Whether the cache trims leading/trailing silence of every file when decoding it."""

    on_bad_file: str = "error"
    """What preparing the cache does with an unreadable file: "error" (stop, naming it) or
    "skip" (leave it out and list it in the cache's report.json)."""

    def __init__(self, root: str | os.PathLike, test_speakers: str | Sequence[str] = ()) -> None:
        self.root = Path(root)
        self.test_speakers = _normalise_speakers(test_speakers)

    @property
    def name(self) -> str:
        """Short file-system-safe name, used for the cache folder."""
        raw = self.root.resolve().name or type(self).__name__
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", raw)

    def prepare(self) -> None:
        """Check that the root folder exists (subclasses may build it here)."""
        if not self.root.exists():
            raise PathNotFoundError(f"{self.root}: corpus folder does not exist")
        if not self.root.is_dir():
            raise DataError(f"{self.root}: corpus root is not a directory")

    @abstractmethod
    def files(self) -> list[AudioFile]:
        """All audio files, sorted by (speaker, path) so that every run sees the same order."""

    def relative(self, path: Path) -> str:
        """`path` relative to the corpus root, as a posix string (names in caches and reports)."""
        return Path(path).relative_to(self.root).as_posix()

    def split(
        self, files: Sequence[AudioFile] | None = None, val_files: int = DEFAULT_VAL_FILES
    ) -> Split:
        """Split `files` (default: `self.files()`) into {"train", "val", "test"}.

        Test is the held-out speakers; no speaker is ever in train and test. A held-out speaker
        that does not occur is an error rather than a silently empty test set (a typo would
        otherwise train on everything). Validation is `val_files` utterances of the training
        speakers (`hold_out_validation`), so it never sees a test speaker.
        """
        files = list(self.files() if files is None else files)
        if self.test_speakers == ALL_SPEAKERS:
            return {"train": [], "val": [], "test": files}
        found = sorted({f.speaker for f in files})
        unknown = sorted(set(self.test_speakers) - set(found))
        if unknown:
            raise DataError(
                f"{self.root}: held-out speaker(s) {unknown} not found; speakers found: {found}"
            )
        held = set(self.test_speakers)
        train, val = hold_out_validation(
            [f for f in files if f.speaker not in held], val_files, self.relative
        )
        return {"train": train, "val": val, "test": [f for f in files if f.speaker in held]}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, test_speakers={self.test_speakers!r})"
        )


class FolderCorpus(Corpus):
    """`root/<speaker>/**/*.{wav,flac,ogg}`; files directly under root form one more speaker.

    That speaker is named after the root folder, so a flat folder of one voice works as is.
    Hidden files and folders (names starting with ".") are ignored: they are temporary files of
    atomic writes or tool metadata, never corpus audio.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        test_speakers: str | Sequence[str] = (),
        extensions: Sequence[str] = ("wav", "flac", "ogg"),
        trim_silence: bool = False,
        on_bad_file: str = "error",
    ) -> None:
        super().__init__(root, test_speakers)
        self.extensions = tuple(e.lower().lstrip(".") for e in extensions)
        if not self.extensions:
            raise ValueError("FolderCorpus needs at least one audio file extension")
        self.trim_silence = bool(trim_silence)
        self.on_bad_file = on_bad_file

    def _is_audio(self, name: str) -> bool:
        if name.startswith(".") or "." not in name:
            return False
        return name.rsplit(".", 1)[1].lower() in self.extensions

    def files(self) -> list[AudioFile]:
        self.prepare_check()
        root_speaker = self.root.resolve().name
        out: list[AudioFile] = []
        for entry in sorted(self.root.iterdir()):
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                for dirpath, dirnames, filenames in os.walk(entry, followlinks=True):
                    dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                    out.extend(
                        AudioFile(Path(dirpath) / f, entry.name)
                        for f in filenames
                        if self._is_audio(f)
                    )
            elif entry.is_file() and self._is_audio(entry.name):
                out.append(AudioFile(entry, root_speaker))
        if not out:
            exts = ", ".join(f".{e}" for e in self.extensions)
            raise DataError(f"{self.root}: no audio files found (looked for {exts}, recursively)")
        out.sort(key=lambda f: (f.speaker, self.relative(f.path)))
        return out

    def prepare_check(self) -> None:
        """Same checks as `Corpus.prepare`, without any building a subclass may add there."""
        Corpus.prepare(self)
