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

__all__ = ["AudioFileError", "read_audio", "to_mono", "trim_silence", "write_audio"]

# Default subtype per file suffix: float WAV is lossless for our float32 signals; FLAC has no
# float subtype, so 24-bit PCM is the closest lossless choice.
_SUBTYPES = {".wav": "FLOAT", ".flac": "PCM_24", ".ogg": "VORBIS"}
_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}


class AudioFileError(UserFacingError, ValueError):
    """An audio file that cannot be used: unreadable, corrupt, empty or with non-finite samples."""


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Decode `path` into a float32 array `(channels, frames)` and its sample rate.

    Raises AudioFileError("<path>: <problem>") so that one bad file in a corpus of thousands
    can be found and fixed instead of surfacing as a libsndfile message without a name.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioFileError(f"{path}: file not found")
    try:
        with sf.SoundFile(str(path)) as f:
            _check_not_truncated(path, f.extra_info)
            data = f.read(dtype="float32", always_2d=True)
            sr = f.samplerate
    except (sf.SoundFileError, RuntimeError, TypeError, ValueError, OSError) as e:
        if isinstance(e, AudioFileError):
            raise
        raise AudioFileError(f"{path}: cannot decode audio ({e})") from e
    if data.shape[0] == 0:
        raise AudioFileError(f"{path}: contains no audio frames")
    if not np.isfinite(data).all():
        raise AudioFileError(f"{path}: contains non-finite samples (NaN or inf)")
    return np.ascontiguousarray(data.T), int(sr)


# libsndfile's log line for a WAV/AIFF whose header promises more audio than the file holds
_TRUNCATED = re.compile(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.M)
# sizes that streaming writers put in the header when they cannot know the length
_UNKNOWN_SIZES = {0, 0xFFFFFFFF, 0x7FFFFFFF, 0xFFFFFFFF - 8}


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
