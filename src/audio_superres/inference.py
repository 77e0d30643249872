"""Chunked overlap-add inference: the ONE path from a low-res signal to the model's output.

`evaluate.py` and `upsample.py` both call it, so what is evaluated is what users get.

Why chunks: a whole 30-minute file through the U-Net needs memory proportional to its length
(activations of every layer), and tools that cut files into independent pieces leave audible
seams. Here the LR signal is cut into fixed-length chunks that overlap by `overlap` LR samples;
each chunk runs through the model (several chunks per batch, every channel separately), and the
outputs are blended in the overlaps with a crossfade window:

    chunk k      ....==========\\\\\\\\
    chunk k+1              ////////==========....
                           |q| ramp |q|

The outer quarter `q` of every overlap is discarded context (weight 0: the edges of a chunk,
where the model sees its zero padding and the spline its boundary condition), the middle half is a
raised-cosine crossfade, and the weights of two neighbours sum to one. Chunk starts are aligned so
that every chunk's HR start is a multiple of the model's stride (`AudioUNet.multiple`,
`DNNBaseline.patch_len`): a strided network is then applied at the same phase as on the whole
file, and with an overlap wider than the receptive field the output equals whole-file processing
up to numerical noise (> 40 dB SNR on real speech; `tests/test_inference.py`). The first chunk
starts at 0 and the last one ends at the end of the signal, so the file's edges are treated exactly
as in whole-file processing. A signal no longer than one chunk is processed in one piece.

Memory is bounded: `super_resolve_stream` reads the LR file block by block (only the frames of the
chunks in flight), and writes each HR frame as soon as no later chunk touches it, so peak memory
depends on `chunk * batch_size`, not on the file's length.

API (also used by benchmarks):

- `super_resolve(model, lr, ratio, *, chunk, overlap, batch_size, device) -> Tensor`
  in memory: `lr` `(C, m)` or `(m,)` -> `(C, m * ratio)` or `(m * ratio,)` float32 on the CPU.
- `super_resolve_stream(model, reader, writer, ratio, ...)`: from a `soundfile.SoundFile` (or
  any object with `read(frames, dtype=, always_2d=)`) to a `SoundFile` (anything with
  `write((frames, C))`), at bounded memory. Returns the number of HR frames written.
- `python -m audio_superres.inference --bench [--ckpt CKPT]`: peak memory and speed for a short
  vs a long input, and chunked vs whole-file SNR on real speech (JSON lines).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CHUNK",
    "DEFAULT_OVERLAP",
    "ChunkPlan",
    "crossfade_ramp",
    "hr_alignment",
    "plan_chunks",
    "resolve_device",
    "super_resolve",
    "super_resolve_stream",
]

DEFAULT_CHUNK = 8192  # LR samples per chunk (2 s at 4 kHz LR)
DEFAULT_OVERLAP = 1024  # LR samples shared by neighbouring chunks (half of it crossfaded)
DEFAULT_BATCH_SIZE = 8  # chunks (x channels) per forward pass


class _Reader(Protocol):
    def read(self, frames: int, dtype: str, always_2d: bool) -> np.ndarray: ...


class _Writer(Protocol):
    def write(self, data: np.ndarray) -> None: ...


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """`auto` -> CUDA when available, else CPU; `cuda` without a GPU is an error."""
    if isinstance(device, torch.device):
        return device
    name = str(device).lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name in ("cuda", "gpu") or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError("device=cuda was asked for, but no CUDA device is available")
        return torch.device("cuda" if name == "gpu" else name)
    if name == "cpu":
        return torch.device("cpu")
    raise ValueError(f"device must be one of auto, cpu, cuda; got {device!r}")


def hr_alignment(model: nn.Module) -> int:
    """HR sample multiple at which the model's strided/patched processing repeats itself."""
    align = 1
    for attr in ("chunk_alignment", "multiple", "patch_len"):
        value = getattr(model, attr, None)
        if isinstance(value, int) and value > 0:
            align = math.lcm(align, value)
    return align


@dataclass(frozen=True)
class ChunkPlan:
    """Where the chunks of an `m`-sample LR signal start, in LR samples."""

    length: int  # m
    chunk: int
    overlap: int
    starts: tuple[int, ...]

    @property
    def hop(self) -> int:
        return self.chunk - self.overlap

    def span(self, k: int) -> tuple[int, int]:
        """LR [start, stop) of chunk k."""
        return self.starts[k], min(self.starts[k] + self.chunk, self.length)


def plan_chunks(m: int, ratio: int, chunk: int, overlap: int, align_hr: int = 1) -> ChunkPlan:
    """Chunk starts for an LR signal of `m` samples.

    The hop (`chunk - overlap`) is rounded down so that every chunk start, in HR samples, is a
    multiple of `align_hr`; the overlap grows by what the hop loses. The last chunk ends at `m`
    and is longer than the overlap, so every overlap region is exactly `overlap` samples.
    """
    if m < 1:
        raise ValueError(f"cannot super-resolve an empty signal (length {m})")
    if chunk < 2 or overlap < 0:
        raise ValueError(f"need chunk >= 2 and overlap >= 0, got chunk={chunk} overlap={overlap}")
    align_lr = align_hr // math.gcd(align_hr, ratio)
    hop = (chunk - overlap) // align_lr * align_lr
    if hop < 1:
        raise ValueError(
            f"chunk={chunk} with overlap={overlap} leaves no hop that is a multiple of "
            f"{align_lr} LR samples (the model's stride): use a longer chunk or a shorter overlap"
        )
    overlap = chunk - hop
    if m <= chunk:
        return ChunkPlan(m, chunk, overlap, (0,))
    n = 1 + -(-(m - chunk) // hop)
    return ChunkPlan(m, chunk, overlap, tuple(k * hop for k in range(n)))


def crossfade_ramp(n: int) -> np.ndarray:
    """Weights 0 -> 1 over `n` samples: a quarter of zeros, a raised cosine, a quarter of ones.

    `ramp + ramp[::-1] == 1`, so two neighbouring chunks' weights sum to one in their overlap.
    """
    q = n // 4
    mid = n - 2 * q
    t = (np.arange(mid) + 0.5) / max(mid, 1)
    rise = 0.5 - 0.5 * np.cos(np.pi * t)
    return np.concatenate([np.zeros(q), rise, np.ones(q)]).astype(np.float32)


def _windows(plan: ChunkPlan, ratio: int, k: int) -> np.ndarray:
    start, stop = plan.span(k)
    w = np.ones((stop - start) * ratio, dtype=np.float32)
    n = plan.overlap * ratio
    if n == 0:
        return w
    ramp = crossfade_ramp(n)
    if k > 0:
        w[:n] = ramp
    if k < len(plan.starts) - 1:
        w[-n:] = ramp[::-1]
    return w


def _groups(plan: ChunkPlan, per_batch: int) -> Iterator[list[int]]:
    """Consecutive chunk indices of equal length, at most `per_batch` of them."""
    group: list[int] = []
    for k in range(len(plan.starts)):
        length = plan.span(k)[1] - plan.span(k)[0]
        if group and (
            len(group) == per_batch or plan.span(group[0])[1] - plan.span(group[0])[0] != length
        ):
            yield group
            group = []
        group.append(k)
    if group:
        yield group


def _run_model(
    model: Callable[[Tensor], Tensor], rows: np.ndarray, device: torch.device
) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32)).to(device)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    )
    with autocast:
        y = model(x)
    return y.float().cpu().numpy()


def _chunked(
    model: Callable[[Tensor], Tensor],
    read: Callable[[int], np.ndarray],
    write: Callable[[np.ndarray], None],
    m: int,
    channels: int,
    ratio: int,
    chunk: int,
    overlap: int,
    batch_size: int,
    device: torch.device,
    align_hr: int,
) -> int:
    """The core: `read(n)` gives the next n LR frames `(C, n)`, `write` takes HR `(C, n)`."""
    plan = plan_chunks(m, ratio, chunk, overlap, align_hr)
    per_batch = max(1, batch_size // max(1, channels))
    buf = np.zeros((channels, 0), dtype=np.float32)
    buf_start = 0  # LR frame index of buf[:, 0]
    acc = np.zeros((channels, 0), dtype=np.float32)
    acc_start = 0  # HR frame index of acc[:, 0]
    written = 0
    for group in _groups(plan, per_batch):
        need = plan.span(group[-1])[1]
        while buf_start + buf.shape[1] < need:
            block = read(need - buf_start - buf.shape[1])
            if block.shape[1] == 0:
                raise ValueError(f"the input ended after {buf_start + buf.shape[1]} of {m} frames")
            buf = np.concatenate([buf, block], axis=1)
        rows = np.stack(
            [buf[:, slice(*(s - buf_start for s in plan.span(k)))] for k in group]
        )  # (G, C, L)
        g, c, length = rows.shape
        out = _run_model(model, rows.reshape(g * c, length), device).reshape(g, c, length * ratio)
        for i, k in enumerate(group):
            start_hr = plan.starts[k] * ratio
            end_hr = start_hr + out.shape[-1]
            if end_hr - acc_start > acc.shape[1]:
                grow = np.zeros((channels, end_hr - acc_start - acc.shape[1]), dtype=np.float32)
                acc = np.concatenate([acc, grow], axis=1)
            acc[:, start_hr - acc_start : end_hr - acc_start] += out[i] * _windows(plan, ratio, k)
        last = group[-1]
        final = (
            plan.starts[last + 1] * ratio if last + 1 < len(plan.starts) else m * ratio
        )  # HR frames before the next chunk are complete
        n_done = final - acc_start
        if n_done > 0:
            write(acc[:, :n_done])
            written += n_done
            acc = acc[:, n_done:].copy()
            acc_start = final
        keep_from = plan.starts[last + 1] if last + 1 < len(plan.starts) else m
        buf = buf[:, keep_from - buf_start :].copy()
        buf_start = keep_from
    return written


def _prepare_model(model: nn.Module | Callable[[Tensor], Tensor], device: torch.device) -> Any:
    if isinstance(model, nn.Module):
        model.eval()
        model.to(device)
    return model


def super_resolve(
    model: nn.Module | Callable[[Tensor], Tensor],
    lr: Tensor | np.ndarray,
    ratio: int,
    *,
    chunk: int = DEFAULT_CHUNK,
    overlap: int = DEFAULT_OVERLAP,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | torch.device = "auto",
    align_hr: int | None = None,
) -> Tensor:
    """Super-resolve an in-memory LR signal `(C, m)` or `(m,)` -> `(C, m*ratio)` / `(m*ratio,)`.

    Each channel (row) is processed separately; the result is float32 on the CPU (on the input's
    device when that is a CUDA tensor). `model` maps LR `(B, m)` -> HR `(B, m * ratio)`; it is put
    in eval mode and moved to `device`. `align_hr` defaults to `hr_alignment(model)`.
    """
    dev = resolve_device(device)
    x = lr.detach().float().cpu().numpy() if isinstance(lr, Tensor) else np.asarray(lr, np.float32)
    squeeze = x.ndim == 1
    x = np.atleast_2d(x)
    if x.ndim != 2:
        raise ValueError(f"expected LR audio (C, m) or (m,), got shape {x.shape}")
    channels, m = x.shape
    pos = 0

    def read(n: int) -> np.ndarray:
        nonlocal pos
        block = x[:, pos : pos + n]
        pos += block.shape[1]
        return block

    parts: list[np.ndarray] = []
    model = _prepare_model(model, dev)
    align = hr_alignment(model) if align_hr is None else align_hr
    with torch.inference_mode():
        _chunked(
            model, read, parts.append, m, channels, ratio, chunk, overlap, batch_size, dev, align
        )
    y = torch.from_numpy(np.concatenate(parts, axis=1))
    if isinstance(lr, Tensor) and lr.device.type == "cuda":
        y = y.to(lr.device)
    return y[0] if squeeze else y


def super_resolve_stream(
    model: nn.Module | Callable[[Tensor], Tensor],
    reader: _Reader,
    writer: _Writer,
    ratio: int,
    *,
    frames: int | None = None,
    channels: int | None = None,
    chunk: int = DEFAULT_CHUNK,
    overlap: int = DEFAULT_OVERLAP,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | torch.device = "auto",
    align_hr: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Super-resolve from an open LR `reader` (e.g. `soundfile.SoundFile`) into `writer`.

    Reads only the frames of the chunks in flight and writes HR frames as soon as they are final,
    so memory does not grow with the file. `frames`/`channels` default to the reader's.
    `progress(n_lr_frames)` is called after each batch. Returns the number of HR frames written.
    """
    m = int(frames if frames is not None else reader.frames)  # type: ignore[attr-defined]
    c = int(channels if channels is not None else reader.channels)  # type: ignore[attr-defined]
    dev = resolve_device(device)

    def read(n: int) -> np.ndarray:
        block = reader.read(n, dtype="float32", always_2d=True)
        if progress is not None:
            progress(block.shape[0])
        return np.ascontiguousarray(block.T)

    def write(hr: np.ndarray) -> None:
        writer.write(np.ascontiguousarray(hr.T))

    model = _prepare_model(model, dev)
    align = hr_alignment(model) if align_hr is None else align_hr
    with torch.inference_mode():
        return _chunked(model, read, write, m, c, ratio, chunk, overlap, batch_size, dev, align)


# ---- one-off measurements -------------------------------------------------------------------


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
    """`python -m audio_superres.inference --bench --ckpt CKPT [--seconds 30 1800]`."""
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
        from audio_superres.module import SuperResolutionModule

        ckpt = load_checkpoint(args.ckpt)
        hp = ckpt["hyper_parameters"]
        module = SuperResolutionModule(
            model=hp["model"],
            ratio=hp["ratio"],
            sample_rate=hp["sample_rate"],
            lowpass=hp["lowpass"],
        )
        module.load_state_dict(ckpt["state_dict"])
        model, ratio, sr = module.model, module.ratio, module.sample_rate
        lowpass = hp["lowpass"]
    elif args.model:
        from hydra import compose, initialize_config_dir
        from omegaconf import OmegaConf

        from audio_superres.training import find_conf_dir

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
