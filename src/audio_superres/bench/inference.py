"""Chunked inference measured: peak memory and speed per input length (`stream`), and chunked vs
whole-file output on real recordings (`seams`).

    python -m audio_superres.bench stream seams [--ckpt CKPT | --infer-model tfilm_small]
        [--stream-seconds 30 1800] [--files a.wav ...] [--chunk N --overlap N]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from audio_superres.bench.records import emit
from audio_superres.inference import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CHUNK,
    DEFAULT_OVERLAP,
    resolve_device,
    super_resolve,
    super_resolve_stream,
)


def snr_db(pred: np.ndarray, ref: np.ndarray) -> float:
    """SNR of `pred` against `ref` via `audio_superres.metrics.snr` (the one metric code)."""
    from audio_superres.metrics import snr

    return float(snr(torch.as_tensor(pred).reshape(1, -1), torch.as_tensor(ref).reshape(1, -1)))


def stream_figures(
    model: nn.Module, ratio: int, lr_rate: int, seconds: Sequence[float], device: str, **kw: Any
) -> None:
    """Peak Python/numpy memory (tracemalloc), peak CUDA memory and speed per input length."""
    import resource
    import tracemalloc

    class _Noise:  # a synthetic reader: nothing but the streaming path holds audio
        def __init__(self, n: int) -> None:
            self.frames, self.channels, self.rng = n, 1, np.random.default_rng(0)

        def read(self, n: int, dtype: str, always_2d: bool) -> np.ndarray:
            n = min(n, self.frames)
            self.frames -= n
            return (0.1 * self.rng.standard_normal((n, 1))).astype(np.float32)

    class _Sink:
        def write(self, data: np.ndarray) -> None:
            pass

    dev = resolve_device(device)
    for s in seconds:
        n = int(s * lr_rate)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        tracemalloc.start()
        t0 = time.perf_counter()
        super_resolve_stream(model, _Noise(n), _Sink(), ratio, device=dev, **kw)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        wall = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        row = {
            "figure": "stream_memory",
            "device": str(dev),
            "seconds_audio": s,
            "peak_host_MiB": round(peak / 2**20, 2),
            # the process's peak resident set so far (shorter inputs run first)
            "peak_rss_MiB_so_far": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "wall_s": round(wall, 2),
            "realtime_factor": round(s / wall, 1),
            "ms_per_audio_s": round(1000 * wall / s, 3),
        }
        if dev.type == "cuda":
            row["peak_cuda_MiB"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        emit(row)


def seam_figures(
    model: nn.Module, ratio: int, sample_rate: int, lowpass: Any, files: Sequence[str], **kw: Any
) -> None:
    """Chunked vs whole-file output on real recordings (made LR with the training filter)."""
    from audio_superres.data.audio_io import read_audio, to_mono
    from audio_superres.dsp.lowpass import make_lowres
    from audio_superres.dsp.resample import resample_audio

    model.eval()
    for f in files:
        x, sr = read_audio(f)
        hr = torch.from_numpy(resample_audio(to_mono(x), sr, sample_rate))[None]
        lr = make_lowres(hr, ratio, lowpass)
        with torch.inference_mode():
            whole = model(lr)[0].numpy()
        chunked = super_resolve(model, lr[0], ratio, device="cpu", **kw).numpy()
        emit(
            {
                "figure": "inference_seams",
                "file": str(f),
                "seconds": round(hr.shape[-1] / sample_rate, 2),
                "chunked_vs_whole_snr_db": round(snr_db(chunked, whole), 2),
            }
        )


def load_bench_model(
    ckpt: str | None, model_name: str = "audiounet_small", final_std: float = 0.3, seed: int = 0
) -> tuple[nn.Module, int, int, Any]:
    """(model, ratio, sample_rate, lowpass): a checkpoint's, or else a conf/model config randomly
    initialised with its last conv scaled to std `final_std`, so the net, not its cubic skip,
    shapes the output (as in tests/test_inference.py)."""
    if ckpt:  # the one way a checkpoint's generator is built
        from audio_superres.resolver import SuperResolver

        resolver = SuperResolver.from_checkpoint(ckpt, device="cpu", precision="32")
        return resolver.model, resolver.ratio, resolver.sample_rate, resolver.training_lowpass
    from audio_superres.bench.core import RATIO, SAMPLE_RATE, build_model

    torch.manual_seed(seed)
    model = build_model(model_name, RATIO)
    final = getattr(model, "final", None)
    if isinstance(final, nn.Conv1d):
        nn.init.normal_(final.weight, std=final_std)
    return model, RATIO, SAMPLE_RATE, "chebyshev"


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m audio_superres.bench.inference --bench ...`: the `stream` and `seams` sections
    of `python -m audio_superres.bench` alone."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bench", action="store_true", help="measure memory, speed and seams")
    p.add_argument("--ckpt", help="checkpoint (default: an untrained --model)")
    p.add_argument("--model", default="audiounet_small", help="a conf/model name, untrained")
    p.add_argument("--final-std", type=float, default=0.3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seconds", type=float, nargs="*", default=[30.0, 1800.0])
    p.add_argument("--files", nargs="*", default=[], help="real recordings for the seam check")
    p.add_argument("--device", default="auto")
    p.add_argument("--chunk", type=int, default=DEFAULT_CHUNK)
    p.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP)
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    args = p.parse_args(argv)
    if not args.bench:
        p.error("nothing to do: pass --bench")
    model, ratio, sr, lowpass = load_bench_model(args.ckpt, args.model, args.final_std, args.seed)
    kw = {"chunk": args.chunk, "overlap": args.overlap, "batch_size": args.batch_size}
    if args.files:
        seam_figures(model, ratio, sr, lowpass, args.files, **kw)
    if args.seconds:
        stream_figures(model, ratio, sr // ratio, args.seconds, args.device, **kw)


if __name__ == "__main__":
    main()
