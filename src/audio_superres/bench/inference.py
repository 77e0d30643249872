"""Chunked inference measured: peak memory and speed per input length, and chunked vs
whole-file output on real recordings (`python -m audio_superres.bench.inference --bench`)."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

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


def _bench_memory(
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
            "bench": "inference_memory",
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
        print(json.dumps(row), flush=True)


def _bench_seams(
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
        print(
            json.dumps(
                {
                    "bench": "inference_seams",
                    "file": str(f),
                    "seconds": round(hr.shape[-1] / sample_rate, 2),
                    "chunked_vs_whole_snr_db": round(snr_db(chunked, whole), 2),
                }
            ),
            flush=True,
        )


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m audio_superres.bench.inference --bench --ckpt CKPT [--seconds 30 1800]`."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bench", action="store_true", help="measure memory, speed and seams")
    p.add_argument("--ckpt", help="checkpoint (default: an untrained demo-size AudioUNet)")
    p.add_argument(
        "--model",
        help="instead of a checkpoint: a conf/model name (e.g. tfilm_small), randomly "
        "initialised with its last conv scaled to std --final-std so the net, not its cubic "
        "skip, shapes the output (as in tests/test_inference.py)",
    )
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
    from audio_superres.checkpoint import instantiate_trusted, load_checkpoint

    if args.ckpt:
        from audio_superres.module import SuperResolutionModule, generator_state_dict

        ckpt = load_checkpoint(args.ckpt)
        hp = ckpt["hyper_parameters"]
        module = SuperResolutionModule(
            model=hp["model"],
            ratio=hp["ratio"],
            sample_rate=hp["sample_rate"],
            lowpass=hp["lowpass"],
        )
        module.model.load_state_dict(generator_state_dict(ckpt["state_dict"]))
        model, ratio, sr = module.model, module.ratio, module.sample_rate
        lowpass = hp["lowpass"]
    elif args.model:
        from hydra import compose, initialize_config_dir
        from omegaconf import OmegaConf

        from audio_superres.runs import find_conf_dir

        ratio, sr, lowpass = 4, 16000, "chebyshev"
        with initialize_config_dir(config_dir=str(find_conf_dir()), version_base="1.3"):
            cfg = compose("train", overrides=[f"model={args.model}", f"ratio={ratio}"])
        torch.manual_seed(args.seed)
        model = instantiate_trusted(OmegaConf.to_container(cfg.model, resolve=True))
        final = getattr(model, "final", None)
        if isinstance(final, nn.Conv1d):
            nn.init.normal_(final.weight, std=args.final_std)
    else:
        ratio, sr, lowpass = 4, 16000, "chebyshev"
        model = instantiate_trusted(
            {
                "_target_": "audio_superres.models.AudioUNet",
                "ratio": ratio,
                "filters": [32, 64, 128, 128],
                "kernels": [9, 9, 9, 9],
                "bottleneck_filters": 128,
            }
        )
    kw = {"chunk": args.chunk, "overlap": args.overlap, "batch_size": args.batch_size}
    if args.files:
        _bench_seams(model, ratio, sr, lowpass, args.files, **kw)
    if args.seconds:
        _bench_memory(model, ratio, sr // ratio, args.seconds, args.device, **kw)


if __name__ == "__main__":
    main()
