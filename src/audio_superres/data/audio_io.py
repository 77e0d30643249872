"""Reading and writing audio files, with errors that name the file and the problem.

Everything inside the package works on float32 arrays shaped `(channels, frames)` (or
`(frames,)` once mixed down to mono); this module is the one place where files are decoded.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import soundfile as sf

from audio_superres.errors import UserFacingError
from audio_superres.utils import atomic_path

__all__ = ["AudioFileError", "AudioReader", "read_audio", "to_mono", "trim_silence", "write_audio"]

# Default subtype per file suffix: float WAV is lossless for our float32 signals; FLAC has no
# float subtype, so 24-bit PCM is the closest lossless choice.
_SUBTYPES = {".wav": "FLOAT", ".flac": "PCM_24", ".ogg": "VORBIS"}
_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}


class AudioFileError(UserFacingError, ValueError):
    """An audio file that cannot be used: unreadable, corrupt, empty or with non-finite samples."""


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Decode `path` into a float32 array `(channels, frames)` and its sample rate.

    Raises AudioFileError("<path>: <problem>") so that one bad file in a corpus of thousands
    can be found and fixed instead of surfacing as a libsndfile message without a name. The
    checks are `AudioReader`'s, the same as for files streamed block by block.
    """
    with AudioReader(path) as f:
        data = f.read(-1)
        return np.ascontiguousarray(data.T), f.samplerate


# libsndfile's log line for a WAV/AIFF whose header promises more audio than the file holds
_TRUNCATED = re.compile(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.M)
# sizes that streaming writers put in the header when they cannot know the length
_UNKNOWN_SIZES = {0, 0xFFFFFFFF, 0x7FFFFFFF, 0xFFFFFFFF - 8}
_DECODE_ERRORS = (sf.SoundFileError, RuntimeError, TypeError, ValueError, OSError)


def _check_not_truncated(path: Path, log: str) -> None:
    """A WAV cut short (a killed copy, a partial download) decodes without any error, just
    shorter: refuse it, so that half a file never silently enters a corpus."""
    found = _TRUNCATED.search(log or "")
    if found:
        declared, present = int(found.group(1)), int(found.group(2))
        if present < declared and declared not in _UNKNOWN_SIZES:
            raise AudioFileError(
                f"{path}: truncated file (the header declares {declared} bytes of audio, "
                f"the file holds {present})"
            )


def _check_openable(path: Path) -> None:
    """The problems of the path itself, named as such (not as a decoding failure)."""
    if path.is_dir():
        raise AudioFileError(f"{path}: is a folder, not an audio file")
    if not path.exists():
        what = "broken symbolic link (or a link loop)" if path.is_symlink() else "file not found"
        raise AudioFileError(f"{path}: {what}")
    if not path.is_file():
        raise AudioFileError(f"{path}: not a regular file (a device, pipe or socket)")
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise AudioFileError(f"{path}: cannot read ({e.strerror or e})") from e


class AudioReader:
    """An audio file open for reading, every frame checked: THE place files are checked.

    `read_audio` (the dataset path: cache, demos) reads a whole file through it and
    `dsp.blockwise.FileReader` (the streaming path: upsample.py) is this class, so a file gives
    the same `AudioFileError("<path>: <problem>")` either way: missing or unreadable, cannot be
    decoded, truncated (the header declares more than the file holds, or fewer frames can be
    read than the header declares), no audio frames, non-finite samples (block by block).
    Has the `soundfile.SoundFile` reading protocol: `frames`, `channels`, `samplerate`,
    `read(n, dtype=, always_2d=) -> (n, channels)`. Use as a context manager or `close()` it.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        _check_openable(self.path)
        try:
            self._f = sf.SoundFile(str(self.path))
        except _DECODE_ERRORS as e:
            raise AudioFileError(f"{self.path}: cannot decode audio ({e})") from e
        try:
            _check_not_truncated(self.path, self._f.extra_info)
            self.frames, self.channels = int(self._f.frames), int(self._f.channels)
            self.samplerate = int(self._f.samplerate)
            if self.frames <= 0:
                raise AudioFileError(f"{self.path}: contains no audio frames")
        except BaseException:
            self._f.close()
            raise
        self._position = 0

    def read(self, frames: int = -1, dtype: str = "float32", always_2d: bool = True) -> np.ndarray:
        """The next `frames` frames (all that remain when negative) as `(n, channels)`."""
        left = self.frames - self._position
        want = left if frames < 0 else min(int(frames), left)
        try:
            x = self._f.read(want, dtype=dtype, always_2d=True)
        except _DECODE_ERRORS as e:
            raise AudioFileError(f"{self.path}: cannot decode audio ({e})") from e
        if x.shape[0] < want:
            raise AudioFileError(
                f"{self.path}: truncated file (the header declares {self.frames} frames, "
                f"only {self._position + x.shape[0]} can be read)"
            )
        if not np.isfinite(x).all():
            raise AudioFileError(f"{self.path}: contains non-finite samples (NaN or inf)")
        self._position += x.shape[0]
        return x if always_2d or self.channels > 1 else x[:, 0]

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> AudioReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def to_mono(audio: np.ndarray) -> np.ndarray:
    """Mix `(channels, frames)` down to `(frames,)` float32 by averaging the channels."""
    audio = np.asarray(audio)
    if audio.ndim == 1:
        return audio.astype(np.float32, copy=False)
    if audio.ndim != 2:
        raise ValueError(f"expected (channels, frames) audio, got shape {audio.shape}")
    return audio.mean(axis=0, dtype=np.float64).astype(np.float32)


def write_audio(
    path: str | os.PathLike, audio: np.ndarray, sr: int, subtype: str | None = None
) -> None:
    """Write `(frames,)` or `(channels, frames)` audio atomically (temporary name, then rename).

    The format comes from the suffix (.wav float32, .flac 24-bit PCM, .ogg Vorbis) unless
    `subtype` is given. Integer subtypes are clipped to [-1, 1] first, because libsndfile
    would otherwise wrap out-of-range samples around.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _FORMATS:
        raise ValueError(f"{path}: unsupported audio suffix {suffix!r} (use .wav, .flac or .ogg)")
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.T  # soundfile wants (frames, channels)
    elif audio.ndim != 1:
        raise ValueError(f"{path}: expected (frames,) or (channels, frames), got {audio.shape}")
    subtype = subtype or _SUBTYPES[suffix]
    if subtype.startswith("PCM") or subtype in ("ULAW", "ALAW"):
        audio = np.clip(audio, -1.0, 1.0)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), audio, int(sr), subtype=subtype, format=_FORMATS[suffix])


def trim_silence(
    x: np.ndarray,
    sr: int,
    threshold_db: float = 40.0,
    margin_s: float = 0.05,
    frame_s: float = 0.01,
) -> np.ndarray:
    """Cut leading and trailing silence from mono `x`; return the (view of the) kept part.

    A 10 ms frame counts as sound when its energy is within `threshold_db` of the loudest
    frame; `margin_s` of context is kept on both sides so onsets and decays are not clipped.
    Relative to the clip's own peak, so quiet and loud recordings are treated alike. An
    all-zero clip returns an empty array.
    """
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"trim_silence expects mono (frames,), got shape {x.shape}")
    frame = max(1, round(frame_s * sr))
    n_frames = -(-len(x) // frame)
    if n_frames == 0:
        return x
    padded = np.zeros(n_frames * frame, dtype=np.float64)
    padded[: len(x)] = x
    energy = np.mean(padded.reshape(n_frames, frame) ** 2, axis=1)
    peak = energy.max()
    if peak <= 0.0:
        return x[:0]
    loud = np.flatnonzero(energy >= peak * 10.0 ** (-threshold_db / 10.0))
    margin = round(margin_s * sr)
    start = max(0, loud[0] * frame - margin)
    stop = min(len(x), (loud[-1] + 1) * frame + margin)
    return x[start:stop]
