"""Chunked overlap-add inference: seam-free against whole-file output, bounded memory, shapes."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch

from audio_superres.data.audio_io import read_audio, to_mono
from audio_superres.dsp.lowpass import make_lowres
from audio_superres.dsp.resample import resample_audio
from audio_superres.errors import ConfigError
from audio_superres.inference import (
    ChunkPlan,
    chunk_window,
    crossfade_ramp,
    plan_chunks,
    super_resolve,
    super_resolve_stream,
)
from audio_superres.models import AudioUNet, TFiLMUNet

from .conftest import SHARED

RATIO = 4


def active_unet(seed: int = 0) -> AudioUNet:
    """A small U-Net whose net (not just its cubic skip) shapes the output.

    An untrained U-Net starts as cubic (last conv ~ N(0, 1e-3)), which would make any seam test
    trivial; the last conv is scaled up so the residual is as large as the signal. Its receptive
    field (+-~250 HR samples) is covered by the test's overlap, as a trained model's is by the
    default overlap.
    """
    torch.manual_seed(seed)
    model = AudioUNet(RATIO, filters=[8, 8, 8, 8], kernels=[9, 9, 9, 9], bottleneck_filters=8)
    torch.nn.init.normal_(model.final.weight, std=0.3)
    return model.eval()


def speech_lr(seconds: float = 4.0) -> torch.Tensor:
    x, sr = read_audio(SHARED / "data" / "vctk_test_clips" / "hr" / "clip1.wav")
    hr = torch.from_numpy(resample_audio(to_mono(x), sr, 16000)[: int(seconds * 16000)])
    return make_lowres(hr[None], RATIO)[0]


def snr_db(pred: np.ndarray, ref: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref**2) / np.sum((pred - ref) ** 2)))


def test_crossfade_weights_sum_to_one_and_plan_covers_the_signal():
    for n in (1, 7, 64, 1000):
        r = crossfade_ramp(n)
        np.testing.assert_allclose(r + r[::-1], 1.0, atol=1e-6)
    plan = plan_chunks(10_001, RATIO, chunk=1024, overlap=250, align_hr=32)
    assert plan.starts[0] == 0 and plan.span(len(plan.starts) - 1)[1] == 10_001
    assert all((s * RATIO) % 32 == 0 for s in plan.starts)  # same stride phase as whole-file
    assert plan.hop % 8 == 0 and plan.overlap >= 250
    last = plan.span(len(plan.starts) - 1)
    assert last[1] - last[0] > plan.overlap  # every overlap region is complete
    assert plan_chunks(500, RATIO, 1024, 256).starts == (0,)


def weight_sum(plan: ChunkPlan, ratio: int) -> np.ndarray:
    """The overlap-add weights of every chunk, summed at every HR sample."""
    total = np.zeros(plan.length * ratio)
    for k, start in enumerate(plan.starts):
        w = chunk_window(plan, ratio, k)
        total[start * ratio : start * ratio + len(w)] += w
    return total


def test_every_plan_sums_to_one_is_aligned_and_ends_at_m():
    """Property test over random lengths, chunks, overlaps, ratios, alignments and contexts."""
    rng = np.random.default_rng(1234)
    for _ in range(600):
        ratio = int(rng.choice([2, 3, 4, 6, 8]))
        align_hr = int(rng.choice([1, 2, 16, 32, 64, 96, 128, 2048, rng.integers(1, 5000)]))
        chunk = int(rng.integers(2, 6000))
        overlap = int(rng.integers(0, chunk // 2 + 1))
        context = None if rng.random() < 0.3 else int(rng.integers(0, 400))
        m = int(rng.integers(1, 30_000))
        plan = plan_chunks(m, ratio, chunk, overlap, align_hr, context)
        case = (m, ratio, chunk, overlap, align_hr, context, plan)
        assert plan.starts[0] == 0, case
        assert plan.span(len(plan.starts) - 1)[1] == m, case
        assert all(s * ratio % align_hr == 0 for s in plan.starts), case
        assert all(b > a for a, b in zip(plan.starts, plan.starts[1:], strict=False)), case
        np.testing.assert_allclose(weight_sum(plan, ratio), 1.0, atol=1e-6, err_msg=str(case))
        if len(plan.starts) > 1:
            assert plan.overlap <= plan.hop, case  # only neighbours overlap
            assert plan.overlap >= overlap, case  # never less than asked for
            if context is not None:  # the discarded quarter covers the model's context
                assert (plan.overlap * ratio) // 4 >= context * ratio, case


def test_the_dnn_plan_that_summed_to_1_44_is_now_valid():
    """DNN (patch 2048 HR) at chunk=1500 overlap=500, r=4: the hop rounded down to 512 left an
    overlap of 988 > hop, three chunks overlapped and the weights reached 1.44."""
    plan = plan_chunks(20_000, 4, 1500, 500, align_hr=2048)
    assert plan.overlap <= plan.hop and plan.overlap >= 500
    np.testing.assert_allclose(weight_sum(plan, 4), 1.0, atol=1e-6)


def test_impossible_overlaps_are_config_errors_naming_chunk_and_overlap():
    with pytest.raises(ConfigError, match=r"overlap=600 is more than half of chunk=1000"):
        plan_chunks(10_000, 4, 1000, 600)
    with pytest.raises(ConfigError, match=r"chunk=1 overlap=0"):
        plan_chunks(10_000, 4, 1, 0)


def test_the_overlap_grows_to_cover_the_context_with_a_log_line(caplog):
    with caplog.at_level("INFO", logger="audio_superres.inference"):
        plan = plan_chunks(100_000, 4, 4096, 64, align_hr=32, context=130)
    assert plan.overlap >= 520 and plan.overlap <= plan.hop
    assert any("overlap raised from 64 to 520" in r.getMessage() for r in caplog.records)


def test_chunked_equals_whole_file_on_real_speech():
    model = active_unet()
    lr = speech_lr()
    with torch.inference_mode():
        whole = model(lr[None])[0].numpy()
        cubic = model.upsample(lr[None])[0].numpy()
    assert snr_db(cubic, whole) < 20  # the net really changes the signal
    chunked = super_resolve(model, lr, RATIO, chunk=1024, overlap=256, batch_size=4, device="cpu")
    assert chunked.shape == (lr.shape[-1] * RATIO,)
    assert snr_db(chunked.numpy(), whole) > 40
    # the same chunks without overlap or crossfade have audible seams: the check can fail. (The
    # model itself would get its overlap raised to cover its context; a plain function has none.)
    seams = super_resolve(
        lambda x: model(x), lr, RATIO, chunk=1024, overlap=0, batch_size=4, device="cpu",
        align_hr=model.chunk_alignment,
    )  # fmt: skip
    assert snr_db(seams.numpy(), whole) < snr_db(chunked.numpy(), whole) - 20


def test_channels_separately_odd_and_short_lengths():
    model = active_unet(1)
    rng = np.random.default_rng(0)
    stereo = rng.standard_normal((2, 3001)).astype(np.float32) * 0.1
    out = super_resolve(model, stereo, RATIO, chunk=512, overlap=128, batch_size=3, device="cpu")
    assert out.shape == (2, 3001 * RATIO) and out.dtype == torch.float32
    for c in range(2):
        mono = super_resolve(model, stereo[c], RATIO, chunk=512, overlap=128, device="cpu")
        torch.testing.assert_close(out[c], mono, atol=1e-5, rtol=0)
    # shorter than one chunk (odd lengths included): one piece, exactly the model's output
    for m in (1, 5, 333):
        x = torch.from_numpy(stereo[:, :m])
        y = super_resolve(model, x, RATIO, chunk=512, overlap=128, device="cpu")
        with torch.inference_mode():
            torch.testing.assert_close(y, model(x), atol=1e-6, rtol=0)


class NoiseReader:
    """LR noise generated on demand: nothing outside the streaming path holds the audio."""

    def __init__(self, frames: int, channels: int = 2) -> None:
        self.frames, self.channels, self.left = frames, channels, frames
        self.rng = np.random.default_rng(0)

    def read(self, n: int, dtype: str = "float32", always_2d: bool = True) -> np.ndarray:
        n = min(n, self.left)
        self.left -= n
        return (0.1 * self.rng.standard_normal((n, self.channels))).astype(dtype)


class CountingSink:
    def __init__(self) -> None:
        self.frames = 0

    def write(self, data: np.ndarray) -> None:
        self.frames += data.shape[0]


def peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def hold(x: torch.Tensor) -> torch.Tensor:
    """A cheap LR -> HR model: the memory test measures the streaming path, not a network."""
    return x.repeat_interleave(RATIO, dim=-1)


def test_streaming_memory_does_not_grow_with_the_input():
    model = hold
    kw = {"chunk": 4096, "overlap": 1024, "batch_size": 4, "device": "cpu"}
    short, long = 40_000, 1_600_000  # 10 s vs 400 s at 4 kHz LR, stereo

    def stream(n: int) -> None:
        sink = CountingSink()
        super_resolve_stream(model, NoiseReader(n), sink, RATIO, **kw)
        assert sink.frames == n * RATIO

    stream(short)  # warm-up: lazily built caches are not the input's memory
    p_short, p_long = peak_bytes(lambda: stream(short)), peak_bytes(lambda: stream(long))
    assert p_long <= 1.2 * p_short, (p_short, p_long)
    # holding the whole signal in memory (the in-memory API) does grow: the measure can fail
    x = NoiseReader(long).read(long).T.copy()
    p_memory = peak_bytes(lambda: super_resolve(model, x, RATIO, **kw))
    assert p_memory > 5 * p_short


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_bf16_matches_cpu():
    model = active_unet(3)
    lr = speech_lr(2.0)
    cpu = super_resolve(model, lr, RATIO, chunk=1024, overlap=256, device="cpu")
    gpu = super_resolve(model, lr, RATIO, chunk=1024, overlap=256, device="cuda")
    assert snr_db(gpu.numpy(), cpu.numpy()) > 25  # bf16 autocast


def test_tfilm_chunks_follow_its_block_grid():
    """TFiLM pools time blocks (and its LSTM runs over them): chunk starts on the block grid
    (`chunk_alignment`) keep chunked output equal to whole-file output; on the conv stride grid
    alone, blocks straddle chunk starts and the output differs."""
    torch.manual_seed(0)
    model = TFiLMUNet(
        RATIO,
        filters=[8, 8, 8],
        kernels=[9, 9, 9],
        bottleneck_filters=8,
        dropout=0.0,
        block_sizes=32,
    )
    torch.nn.init.normal_(model.final.weight, std=0.3)
    model.eval()
    assert model.chunk_alignment == 64 and model.multiple == 16
    lr = speech_lr(2.0)
    with torch.inference_mode():
        whole = model(lr[None])[0].numpy()
    kw = {"chunk": 1500, "overlap": 500, "batch_size": 16, "device": "cpu"}
    aligned = super_resolve(model, lr, RATIO, **kw).numpy()
    assert snr_db(aligned, whole) > 40
    strided = super_resolve(model, lr, RATIO, align_hr=model.multiple, **kw).numpy()
    assert snr_db(strided, whole) < snr_db(aligned, whole) - 10
