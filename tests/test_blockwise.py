"""Block-wise resampling and degradation equal the whole-file functions, at bounded memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import soundfile as sf
import torch

from audio_superres.data.audio_io import AudioFileError, read_audio
from audio_superres.dsp.blockwise import FileReader, LowresReader, ResampledReader
from audio_superres.dsp.lowpass import make_lowres
from audio_superres.dsp.resample import resample_audio
from audio_superres.inference import super_resolve_stream

from .conftest import SHARED


class ArrayReader:
    def __init__(self, x: np.ndarray) -> None:
        self.x, self.pos = x, 0
        self.channels, self.frames = x.shape

    def read(self, n: int, dtype: str = "float32", always_2d: bool = True) -> np.ndarray:
        block = self.x[:, self.pos : self.pos + n]
        self.pos += block.shape[1]
        return block.T.astype(dtype)


def drain(reader, step: int = 2999) -> np.ndarray:
    parts = []
    while (block := reader.read(step)).shape[0]:
        parts.append(block.T)
    return np.concatenate(parts, axis=1)


def snr_db(pred: np.ndarray, ref: np.ndarray) -> float:
    err = np.sum((pred - ref) ** 2)
    return float("inf") if err == 0 else float(10 * np.log10(np.sum(ref**2) / err))


@pytest.fixture(scope="module")
def speech() -> tuple[np.ndarray, int]:
    """Real speech, two channels (the second one delayed and quieter), 16 kHz."""
    x, sr = read_audio(SHARED / "data" / "vctk_test_clips" / "hr" / "clip2.wav")
    x = resample_audio(x[:1], sr, 16000)[0, : 2 * 16000]
    return np.stack([x, 0.5 * np.roll(x, 777)]), 16000


@pytest.mark.parametrize("ratio,lowpass", [(4, "chebyshev"), (8, "chebyshev"), (2, "butterworth")])
def test_streamed_degradation_matches_whole_file(speech, ratio, lowpass):
    x, _ = speech
    x = x[:, :-5]  # a length that is not a multiple of the ratio: cropped like make_lowres does
    whole = make_lowres(torch.from_numpy(x), ratio, lowpass).numpy()
    reader = LowresReader(ArrayReader(x), ratio, lowpass, block=1500)
    streamed = drain(reader)
    assert streamed.shape == whole.shape and reader.frames == whole.shape[1]
    assert snr_db(streamed, whole) > 60
    # blocks with almost no context show their edges: the comparison can fail
    short = LowresReader(ArrayReader(x), ratio, lowpass, block=1500)
    short.context = ratio
    assert snr_db(drain(short), whole) < 60


@pytest.mark.parametrize(
    "lowpass",
    [
        {"kind": "resample", "resampler": "sinc_kaiser", "cutoff": 0.95, "filter_width": 32},
        {"kind": "resample", "resampler": "poly_kaiser", "cutoff": 1.0, "filter_width": 10},
        {"kind": "chebyshev", "codec": "mp3", "bitrate_kbps": 32},
    ],
)
def test_streamed_resampler_and_codec_inputs_match_whole_file(speech, lowpass):
    """A resampler streams with its kernel's context; a codec is coded as one block, at the
    source's own rate (`samplerate`, as FileReader and ResampledReader have it)."""
    x, sr = speech
    source = ArrayReader(x[:, :-3])
    source.samplerate = sr
    whole = make_lowres(torch.from_numpy(x[:, :-3]), 4, lowpass, sample_rate=sr).numpy()
    streamed = drain(LowresReader(source, 4, lowpass, block=1500))
    assert streamed.shape == whole.shape
    assert snr_db(streamed, whole) > 60
    if lowpass["kind"] == "resample":  # without the kernel's context the block edges show
        short = ArrayReader(x[:, :-3])
        short_reader = LowresReader(short, 4, lowpass, block=1500)
        short_reader.context = 4
        assert snr_db(drain(short_reader), whole) < 60


@pytest.mark.parametrize("orig,target", [(44100, 4000), (16000, 4000), (16000, 22050)])
def test_streamed_resampling_matches_whole_file(speech, orig, target):
    x, _ = speech
    x = x[:, : orig * 2 + 7]  # relabelled as `orig` Hz: only the sample grid matters here
    whole = resample_audio(x, orig, target)
    reader = ResampledReader(ArrayReader(x), orig, target, block=500)
    streamed = drain(reader)
    assert streamed.shape == whole.shape and reader.frames == whole.shape[1]
    assert snr_db(streamed, whole) > 100
    cut = ResampledReader(ArrayReader(x), orig, target, block=500)
    cut.context = 0
    assert snr_db(drain(cut), whole) < 60


class NoiseReader:
    def __init__(self, frames: int) -> None:
        self.frames, self.channels, self.left = frames, 1, frames
        self.rng = np.random.default_rng(0)

    def read(self, n: int, dtype: str = "float32", always_2d: bool = True) -> np.ndarray:
        n = min(n, self.left)
        self.left -= n
        return (0.1 * self.rng.standard_normal((n, 1))).astype(dtype)


class Sink:
    def write(self, data: np.ndarray) -> None:
        pass


def test_hr_path_streams_at_bounded_memory():
    """44.1 kHz HR -> 16 kHz -> make_lowres -> model: peak memory does not grow with the input."""

    def hold(x: torch.Tensor) -> torch.Tensor:
        return x.repeat_interleave(4, dim=-1)

    def run(seconds: float) -> int:
        hr = ResampledReader(NoiseReader(int(seconds * 44100)), 44100, 16000, block=16000)
        lr = LowresReader(hr, 4, block=4000)  # 1 s blocks: many of them even in 8 s
        tracemalloc.start()
        try:
            super_resolve_stream(hold, lr, Sink(), 4, chunk=4096, overlap=512, device="cpu")
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    run(3)  # warm-up (filter designs and caches)
    short, long = run(8), run(48)
    assert long <= 1.2 * short, (short, long)
    # whole-file resampling of the long input (the old path) does grow: the measure can fail
    tracemalloc.start()
    resample_audio(NoiseReader(48 * 44100).read(48 * 44100)[:, 0], 44100, 16000)
    whole = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert whole > 3 * short, (short, whole)


def test_file_reader_names_the_file(tmp_path):
    bad = tmp_path / "nan.wav"
    x = np.zeros(1000, dtype=np.float32)
    x[700] = np.nan
    sf.write(bad, x, 8000, subtype="FLOAT")
    with FileReader(bad) as f, pytest.raises(AudioFileError, match=f"{bad}: contains non-finite"):
        f.read(1000)
    (tmp_path / "junk.wav").write_bytes(b"not audio")
    with pytest.raises(AudioFileError, match="junk.wav: cannot decode audio"):
        FileReader(tmp_path / "junk.wav")
