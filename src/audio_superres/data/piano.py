"""A folder of piano recordings, split by recording 88/6/6 (REFERENCE section 4).

The literature's piano set is Beethoven's 32 sonatas (SampleRNN's "music" set; fetch it with
`make data-piano`), but any folder of recordings works, in any format libsndfile reads. Each
recording is its own group (the "speaker" of the cache), so no recording is ever in two splits.
The split is a pure function of the relative file names: recordings are ordered by the SHA-256
of their relative path and the first 6% are test, the next 6% validation, the rest training,
so every machine and every run gets the same split without a seed or a split file.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from audio_superres.data.corpora import (
    ALL_SPEAKERS,
    DEFAULT_VAL_FILES,
    AudioFile,
    Corpus,
    Split,
    check_split,
)
from audio_superres.errors import DataError

__all__ = ["AUDIO_EXTENSIONS", "SPLIT_FRACTIONS", "PianoCorpus", "split_by_name"]

DEFAULT_ROOT = Path("data/piano")
SPLIT_FRACTIONS = (0.88, 0.06, 0.06)
"""Train, validation, test shares of the recordings."""
AUDIO_EXTENSIONS = (
    "wav", "flac", "ogg", "oga", "opus", "mp3", "aif", "aiff", "aifc", "au", "caf", "w64", "rf64",
)  # fmt: skip
"""Suffixes of the formats libsndfile (soundfile) decodes."""


def _rank(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8")).hexdigest()


def split_by_name(
    names: Sequence[str], fractions: Sequence[float] = SPLIT_FRACTIONS
) -> dict[str, list[str]]:
    """{"train", "val", "test"}: `names` ordered by SHA-256, cut by `fractions` (rounded).

    With three or more names, validation and test get at least one each; 32 recordings give
    28/2/2. Depends on nothing but the names, so it is the same everywhere.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions must be 3 non-negative shares summing to 1, got {fractions}")
    order = sorted(set(names), key=lambda n: (_rank(n), n))
    n = len(order)
    n_test = round(n * fractions[2])
    n_val = round(n * fractions[1])
    if n >= 3:
        n_test = max(n_test, 1) if fractions[2] > 0 else 0
        n_val = max(n_val, 1) if fractions[1] > 0 else 0
    return {
        "test": sorted(order[:n_test]),
        "val": sorted(order[n_test : n_test + n_val]),
        "train": sorted(order[n_test + n_val :]),
    }


class PianoCorpus(Corpus):
    """`root/**/*.<audio>`: every recording its own group, split 88/6/6 by `split_by_name`.

    `test_speakers` (recording names: relative paths without suffix) overrides the split with
    a hand-picked held-out set; `"*"` puts everything in test. `download=True` fetches the
    Beethoven sonatas into an empty root first.
    """

    def __init__(
        self,
        root: str | os.PathLike = DEFAULT_ROOT,
        test_speakers: str | Sequence[str] | None = (),
        extensions: Sequence[str] | None = None,
        trim_silence: bool = False,
        fractions: Sequence[float] = SPLIT_FRACTIONS,
        download: bool = False,
        on_bad_file: str = "error",
    ) -> None:
        super().__init__(root, test_speakers or ())
        self.extensions = tuple(e.lower().lstrip(".") for e in (extensions or AUDIO_EXTENSIONS))
        self.trim_silence = bool(trim_silence)
        self.fractions = tuple(float(f) for f in fractions)
        split_by_name([], self.fractions)  # validate now, not at setup
        self.download = bool(download)
        self.on_bad_file = on_bad_file

    def prepare(self) -> None:
        """Fetch the Beethoven sonatas when asked to and the folder has no audio yet."""
        if self.download and not (self.root.is_dir() and self._scan()):
            from audio_superres.data.download import fetch

            fetch("piano", self.root)
        Corpus.prepare(self)

    def _scan(self) -> list[Path]:
        out = []
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            out.extend(
                Path(dirpath) / f
                for f in filenames
                if not f.startswith(".")
                and f.rsplit(".", 1)[-1].lower() in self.extensions
                and "." in f
            )
        return out

    def recording(self, path: Path) -> str:
        """The recording name of a file: its relative path without the suffix."""
        rel = self.relative(path)
        return rel.rsplit(".", 1)[0]

    def files(self) -> list[AudioFile]:
        """Every recording under root (recursively, hidden names skipped), sorted."""
        Corpus.prepare(self)
        found = self._scan()
        if not found:
            exts = ", ".join(f".{e}" for e in self.extensions)
            raise DataError(f"{self.root}: no audio files found (looked for {exts}, recursively)")
        out = [AudioFile(p, self.recording(p)) for p in found]
        dupes = sorted(n for n, k in Counter(f.speaker for f in out).items() if k > 1)
        if dupes:
            raise DataError(
                f"{self.root}: recordings {dupes[:5]} exist in several formats; keep one each"
            )
        out.sort(key=lambda f: (f.speaker, self.relative(f.path)))
        return out

    def split(
        self, files: Sequence[AudioFile] | None = None, val_files: int = DEFAULT_VAL_FILES
    ) -> Split:
        """{"train", "val", "test"} by recording (`split_by_name` of the recording names).

        Validation is its own group of recordings (6%, disjoint from test), also when
        `test_speakers` picks the test recordings (then 6% of the others); `val_files` is not
        used (the DataModule bounds how many of them it validates on).
        """
        files = list(self.files() if files is None else files)
        if self.test_speakers == ALL_SPEAKERS:
            return check_split(super().split(files, 0), self.root)
        if self.test_speakers:
            result = super().split(files, 0)
            share = self.fractions[1]
            names = split_by_name([f.speaker for f in result["train"]], (1 - share, share, 0.0))
            val = set(names["val"])
            result["val"] = [f for f in result["train"] if f.speaker in val]
            result["train"] = [f for f in result["train"] if f.speaker not in val]
            return check_split(result, self.root)
        parts = split_by_name([f.speaker for f in files], self.fractions)
        where = {name: part for part, names in parts.items() for name in names}
        result: Split = {"train": [], "val": [], "test": []}
        for f in sorted(files, key=lambda f: (f.speaker, str(f.path))):
            result[where[f.speaker]].append(f)
        return check_split(result, self.root)
