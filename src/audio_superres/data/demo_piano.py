"""The offline demo piano corpus: keyboard pieces of the music21 corpus rendered by FluidSynth.

Stands in for Beethoven's sonatas when there is no internet (REFERENCE section 4): each piece's
MusicXML is parsed by `music21` (repeats expanded, every part played by an acoustic grand), written
as MIDI, and rendered by Debian's `fluidsynth` with `FluidR3_GM.sf2` at 48 kHz (its piano has
harmonics to ~11 kHz). Output: `<out>/<piece>/<piece>_NNN.flac` (10-15 s clips, 24-bit mono),
one folder per piece so the FolderCorpus split by "speaker" is a split by piece, and
`manifest.json`, written last, which makes the build idempotent.

    python -m audio_superres.data.demo_piano [--out data/demo_piano]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from audio_superres.data.audio_io import read_audio, to_mono, trim_silence, write_audio
from audio_superres.data.cache import make_build_dir, ordered_map
from audio_superres.data.corpora import FolderCorpus
from audio_superres.errors import UserFacingError
from audio_superres.utils import atomic_write_json

__all__ = [
    "DEMO_PIANO_TEST_PIECES",
    "PIECES",
    "DemoPianoCorpus",
    "DemoPianoMissingError",
    "Piece",
    "build_demo_piano",
    "is_complete",
    "main",
    "summary",
]

BUILD_VERSION = 1
"""Bump when the rendering or cutting changes: older builds are then rebuilt."""

DEFAULT_OUT = Path("data/demo_piano")
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
FLUIDSYNTH = "fluidsynth"
PACKAGES = ("fluidsynth", "fluid-soundfont-gm")
TARGET_SR = 48_000
SEGMENT_S = 10.0
"""Clip length: whole pieces are minutes long, too long to evaluate in one pass on a CPU."""
MIN_LAST_S = 5.0
"""A remainder shorter than this is appended to the previous clip instead of standing alone."""
GAIN = 0.5
PEAK = 0.9
TRIM_DB = 40.0
"""Leading silence and the reverb tail below this many dB under the loudest 10 ms are cut: a
near-silent tail clip would otherwise stand as a test utterance whose SNR measures nothing."""


@dataclass(frozen=True)
class Piece:
    """A keyboard piece of the music21 corpus; `id` names its folder (the split unit)."""

    id: str
    corpus_path: str
    title: str


PIECES: tuple[Piece, ...] = (
    Piece("bach_bwv846", "bach/bwv846", "J. S. Bach, Prelude in C major BWV 846"),
    Piece("cpebach_h186", "cpebach/h186", "C. P. E. Bach, H. 186"),
    Piece("joplin_maple_leaf_rag", "joplin/maple_leaf_rag", "Joplin, Maple Leaf Rag"),
    Piece("mozart_k545_1", "mozart/k545/movement1_exposition", "Mozart, K. 545/i (exposition)"),
    Piece("schoenberg_op19_2", "schoenberg/opus19/movement2", "Schoenberg, op. 19 no. 2"),
    Piece("schoenberg_op19_6", "schoenberg/opus19/movement6", "Schoenberg, op. 19 no. 6"),
    Piece("schumann_clara_op1_1", "schumann_clara/polonaise_op1n1", "C. Schumann, op. 1 no. 1"),
    Piece("schumann_clara_op1_2", "schumann_clara/polonaise_op1n2", "C. Schumann, op. 1 no. 2"),
    Piece("schumann_clara_op1_3", "schumann_clara/polonaise_op1n3", "C. Schumann, op. 1 no. 3"),
    Piece("schumann_clara_op1_4", "schumann_clara/polonaise_op1n4", "C. Schumann, op. 1 no. 4"),
)

DEMO_PIANO_TEST_PIECES = ("schumann_clara_op1_3", "mozart_k545_1")
"""Held-out pieces (validation + test): a style also in training (Clara Schumann's other
polonaises) and one that is not (Mozart), so the score shows both kinds of generalisation."""


class DemoPianoMissingError(UserFacingError, RuntimeError):
    """music21, fluidsynth or the soundfont is not installed."""


def check_tools(soundfont: Path = SOUNDFONT) -> None:
    """Raise DemoPianoMissingError saying what to install."""
    missing = []
    try:
        importlib.metadata.version("music21")
    except importlib.metadata.PackageNotFoundError:
        missing.append("the Python package music21 (pip install music21)")
    if shutil.which(FLUIDSYNTH) is None:
        missing.append("fluidsynth (apt-get install fluidsynth)")
    if not Path(soundfont).is_file():
        missing.append(f"{soundfont} (apt-get install fluid-soundfont-gm)")
    if missing:
        raise DemoPianoMissingError(
            "demo piano corpus needs " + "; ".join(missing) + " (`make apt` installs the Debian "
            "packages)"
        )


def _fluidsynth_version() -> str | None:
    try:
        res = subprocess.run(
            [FLUIDSYNTH, "--version"], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.splitlines()[0].strip() if res.returncode == 0 and res.stdout else None


def _score_to_midi(piece: Piece, midi: Path) -> None:
    """MusicXML -> MIDI with music21: repeats expanded, every part an acoustic grand piano."""
    from music21 import corpus, instrument

    score = corpus.parse(piece.corpus_path)
    try:
        score = score.expandRepeats()
    except Exception:  # noqa: BLE001 (music21 raises many types; unexpanded is still music)
        pass
    for part in score.parts:
        for old in list(part.recurse().getElementsByClass(instrument.Instrument)):
            part.remove(old, recurse=True)
        part.insert(0, instrument.Piano())
    score.write("midi", fp=str(midi))


def _render(midi: Path, wav: Path, soundfont: Path) -> None:
    """MIDI -> 48 kHz float WAV with fluidsynth (argument list, no shell; reverb on, chorus off)."""
    cmd = [
        FLUIDSYNTH,
        "-n",
        "-i",
        "-q",
        "-R",
        "1",
        "-C",
        "0",
        "-g",
        str(GAIN),
        "-r",
        str(TARGET_SR),
        "-O",
        "float",
        "-T",
        "wav",
        "-F",
        str(wav),
        str(soundfont),
        str(midi),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    if res.returncode != 0 or not wav.is_file():
        raise RuntimeError(
            f"{midi}: fluidsynth failed (exit {res.returncode}): {res.stderr.strip()[-500:]}"
        )


def _segments(n: int, sr: int) -> list[tuple[int, int]]:
    """[start, stop) of SEGMENT_S clips; a short remainder joins the previous clip."""
    seg = round(SEGMENT_S * sr)
    bounds = list(range(0, n, seg)) + [n]
    if len(bounds) > 2 and n - bounds[-2] < MIN_LAST_S * sr:
        del bounds[-2]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def _process(job: tuple[Piece, Path, str]) -> dict[str, Any]:
    """Render one piece into `out/<id>/<id>_NNN.flac`; return its manifest record."""
    piece, out, soundfont = job
    with tempfile.TemporaryDirectory(prefix=f"demo_piano-{piece.id}-") as tmp:
        midi, wav = Path(tmp) / f"{piece.id}.mid", Path(tmp) / f"{piece.id}.wav"
        _score_to_midi(piece, midi)
        _render(midi, wav, Path(soundfont))
        audio, sr = read_audio(wav)
    if sr != TARGET_SR:
        raise RuntimeError(f"{wav}: fluidsynth wrote {sr} Hz, expected {TARGET_SR}")
    x = trim_silence(to_mono(audio), sr, threshold_db=TRIM_DB, margin_s=0.2)
    peak = float(np.abs(x).max()) if len(x) else 0.0
    if peak <= 0.0:
        raise RuntimeError(f"{piece.corpus_path}: rendered silence")
    x = (x * (PEAK / peak)).astype(np.float32)
    files = []
    for k, (a, b) in enumerate(_segments(len(x), sr)):
        rel = f"{piece.id}/{piece.id}_{k:03d}.flac"
        write_audio(out / rel, x[a:b], sr)
        files.append(rel)
    return {
        **asdict(piece),
        "duration_s": round(len(x) / sr, 3),
        "rendered_peak": round(peak, 4),
        "files": files,
    }


def _options(pieces: Sequence[Piece], soundfont: Path) -> dict[str, Any]:
    return {
        "pieces": [p.id for p in pieces],
        "sample_rate": TARGET_SR,
        "segment_s": SEGMENT_S,
        "min_last_s": MIN_LAST_S,
        "gain": GAIN,
        "peak": PEAK,
        "trim_db": TRIM_DB,
        "soundfont": str(soundfont),
    }


def load_manifest(out: str | os.PathLike) -> dict[str, Any] | None:
    """The manifest of a finished build in `out`, or None (absent or unreadable)."""
    try:
        return json.loads((Path(out) / "manifest.json").read_text())
    except (OSError, ValueError):
        return None


def is_complete(
    out: str | os.PathLike = DEFAULT_OUT,
    pieces: Sequence[Piece] = PIECES,
    soundfont: Path = SOUNDFONT,
) -> bool:
    """Whether `out` holds a finished build of this version and these options."""
    manifest = load_manifest(out)
    if not manifest or manifest.get("version") != BUILD_VERSION:
        return False
    if manifest.get("options") != _options(pieces, soundfont):
        return False
    return all((Path(out) / f).is_file() for p in manifest["pieces"] for f in p["files"])


def _remove_old_build(out: Path) -> None:
    """Delete a previous build, but never a folder holding files that are not ours."""
    if not out.exists():
        return
    foreign = [
        p
        for p in out.rglob("*")
        if p.is_file() and p.suffix != ".flac" and p.name != "manifest.json"
    ]
    if foreign:
        raise FileExistsError(
            f"{out}: exists and holds files that are not part of a demo piano build "
            f"(e.g. {foreign[0]}); remove it or choose another --out"
        )
    aside = out.parent / f".{out.name}.old-{os.getpid()}"
    os.rename(out, aside)
    shutil.rmtree(aside, ignore_errors=True)


def build_demo_piano(
    out: str | os.PathLike = DEFAULT_OUT,
    *,
    pieces: Sequence[Piece] | None = None,
    num_workers: int = 2,
    soundfont: Path = SOUNDFONT,
    verbose: bool = True,
) -> dict[str, Any]:
    """Build the corpus into `out` unless an up-to-date build is there; return its manifest.

    Rendered into a hidden sibling folder that is renamed onto `out` only after
    `manifest.json` is written, so an interrupted build never looks finished. `pieces`
    selects a subset (for tests; recorded in the manifest).
    """
    out = Path(out)
    pieces = tuple(PIECES if pieces is None else pieces)
    if is_complete(out, pieces, soundfont):
        if verbose:
            print(f"{out}: demo piano corpus is up to date", file=sys.stderr)
        manifest = load_manifest(out)
        assert manifest is not None
        return manifest
    check_tools(soundfont)
    t0 = time.monotonic()
    tmp = make_build_dir(out.parent, out.name)
    try:
        records = []
        jobs = [(p, tmp, str(soundfont)) for p in pieces]
        for i, rec in enumerate(ordered_map(_process, jobs, num_workers, chunksize=1), 1):
            records.append(rec)
            if verbose:
                print(
                    f"[demo_piano] {i}/{len(jobs)} {rec['id']}: {rec['duration_s']:.0f} s, "
                    f"{len(rec['files'])} clips",
                    file=sys.stderr,
                )
        total = sum(r["duration_s"] for r in records)
        test = sum(r["duration_s"] for r in records if r["id"] in DEMO_PIANO_TEST_PIECES)
        manifest = {
            "version": BUILD_VERSION,
            "options": _options(pieces, soundfont),
            "tools": {
                "music21": importlib.metadata.version("music21"),
                "fluidsynth": _fluidsynth_version(),
                "soundfont_bytes": Path(soundfont).stat().st_size,
            },
            "sample_rate": TARGET_SR,
            "test_pieces": list(DEMO_PIANO_TEST_PIECES),
            "files": sum(len(r["files"]) for r in records),
            "duration_s": round(total, 3),
            "test_share": round(test / total, 4) if total else 0.0,
            "build_seconds": round(time.monotonic() - t0, 1),
            "pieces": records,
        }
        atomic_write_json(tmp / "manifest.json", manifest)
        _remove_old_build(out)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def summary(manifest: dict[str, Any], out: str | os.PathLike = DEFAULT_OUT) -> str:
    """Human-readable summary: clips and minutes per piece, train/test minutes."""
    lines = [
        f"{out}: {manifest['files']} clips, {manifest['duration_s'] / 60:.1f} min at "
        f"{manifest['sample_rate']} Hz (built in {manifest['build_seconds']:.0f} s)"
    ]
    for r in manifest["pieces"]:
        tag = "  [test]" if r["id"] in manifest["test_pieces"] else ""
        lines.append(
            f"  {r['id']:24s} {len(r['files']):3d} clips {r['duration_s'] / 60:5.2f} min{tag}"
        )
    test = manifest["duration_s"] * manifest["test_share"]
    lines.append(
        f"  train {(manifest['duration_s'] - test) / 60:.1f} min, test {test / 60:.1f} min "
        f"({manifest['test_share']:.1%})"
    )
    return "\n".join(lines)


class DemoPianoCorpus(FolderCorpus):
    """The demo piano corpus as a FolderCorpus: speakers are pieces, `prepare()` builds it.

    `extensions`, `trim_silence` and `on_bad_file` are accepted so that configs shared with
    FolderCorpus work; the rendered clips are already trimmed.
    """

    def __init__(
        self,
        root: str | os.PathLike = DEFAULT_OUT,
        test_speakers: str | Sequence[str] | None = DEMO_PIANO_TEST_PIECES,
        extensions: Sequence[str] = ("flac",),
        trim_silence: bool = False,
        num_workers: int = 2,
        on_bad_file: str = "error",
    ) -> None:
        if test_speakers is None:
            test_speakers = DEMO_PIANO_TEST_PIECES
        super().__init__(
            root, test_speakers, extensions=extensions, trim_silence=trim_silence,
            on_bad_file=on_bad_file,
        )
        self.num_workers = num_workers

    @property
    def name(self) -> str:
        return "demo_piano"

    def prepare(self) -> None:
        """Build the corpus (a few minutes on 2 cores) unless a finished build is there."""
        if not is_complete(self.root):
            manifest = build_demo_piano(self.root, num_workers=self.num_workers)
            print(summary(manifest, self.root), file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: build (or confirm) the corpus and print its summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument("--workers", type=int, default=2, help="rendering processes")
    parser.add_argument("--soundfont", type=Path, default=SOUNDFONT, help="General MIDI .sf2")
    args = parser.parse_args(argv)
    try:
        manifest = build_demo_piano(
            args.out, num_workers=args.workers, soundfont=args.soundfont, verbose=True
        )
    except DemoPianoMissingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary(manifest, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
