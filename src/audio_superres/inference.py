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
raised-cosine crossfade, and the weights of two neighbours sum to one. The first chunk starts at 0
and the last one ends at the end of the signal, so the file's edges are treated exactly as in
whole-file processing. A signal no longer than one chunk is processed in one piece.

How a plan is made (`plan_chunks`), from the model's interface (`models/base.SuperResModel`):

- Alignment: every chunk's HR start is a multiple of `chunk_alignment` (the U-Net's stride
  grid, the DNN's patches, TFiLM's pooled blocks), so a strided or patched network is applied at
  the same phase as on the whole file. The hop is rounded DOWN to such a multiple.
- Context: the discarded quarter of each overlap must cover `context` LR samples, so every output
  sample that gets a weight above zero saw all the input it depends on: the overlap is raised
  automatically to `4 * context` when it is smaller (one log line says so). Where `context` is
  finite, chunked output then equals whole-file output up to numerical noise
  (`tests/models/test_contract.py`); `context=None` (a model that looks at the whole input,
  e.g. TFiLM's LSTMs) keeps the overlap asked for, and chunked output approximates whole-file.
- Only neighbours overlap: the overlap may not exceed the hop (at most half a chunk), else three
  chunks would overlap and the crossfade weights would sum to more than one. An overlap asked
  for above half the chunk is a `ConfigError`; when the alignment or the model's context leaves
  no valid hop in the chunk asked for, the chunk is lengthened to the shortest valid one (logged).
  The overlap actually used is the chunk minus the rounded hop, capped at the hop (the chunk is
  shortened to hop + overlap when the cap applies), so every weight sum is exactly one
  (`tests/test_inference.py`, property test over random plans).

Memory is bounded: `super_resolve_stream` reads the LR file block by block (only the frames of the
chunks in flight), and writes each HR frame as soon as no later chunk touches it, so peak memory
depends on `chunk * batch_size`, not on the file's length.

API (also used by benchmarks):

- `super_resolve(model, lr, ratio, *, chunk, overlap, batch_size, device) -> Tensor`
  in memory: `lr` `(C, m)` or `(m,)` -> `(C, m * ratio)` or `(m * ratio,)` float32 on the CPU.
- `super_resolve_stream(model, reader, writer, ratio, ...)`: from a `soundfile.SoundFile` (or
  any object with `read(frames, dtype=, always_2d=)`) to a `SoundFile` (anything with
  `write((frames, C))`), at bounded memory. Returns the number of HR frames written.
- `python -m audio_superres.bench seams [--ckpt CKPT]` (`bench/inference.py`): peak memory and
  speed for a short vs a long input, and chunked vs whole-file SNR on real speech (JSON lines).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from audio_superres.errors import ConfigError
from audio_superres.models.base import SuperResModel
from audio_superres.precision import (
    PrecisionChoice,
    autocast,
    choose_precision,
    normalise_precision,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CHUNK",
    "DEFAULT_OVERLAP",
    "ChunkPlan",
    "InferenceSettings",
    "chunk_window",
    "crossfade_ramp",
    "hr_alignment",
    "model_context",
    "plan_chunks",
    "resolve_device",
    "resolve_precision",
    "super_resolve",
    "super_resolve_stream",
]

DEFAULT_CHUNK = 8192  # LR samples per chunk (2 s at 4 kHz LR)
DEFAULT_OVERLAP = 1024  # LR samples shared by neighbouring chunks (half of it crossfaded)
DEFAULT_BATCH_SIZE = 8  # chunks (x channels) per forward pass

log = logging.getLogger(__name__)
_logged: set[str] = set()  # plan adjustments already reported (once per process, not per file)


def _log_once(message: str) -> None:
    if message not in _logged:
        _logged.add(message)
        log.info("%s", message)


@dataclass(frozen=True)
class InferenceSettings:
    """How `super_resolve` cuts a signal into chunks: keyword arguments of `super_resolve`.

    One config node (`conf/inference/`) gives them to validation and test in train.py, to
    evaluate.py and to upsample.py, so every score is of the output users get.
    """

    chunk: int = DEFAULT_CHUNK  # LR samples per chunk
    overlap: int = DEFAULT_OVERLAP  # LR samples shared by neighbouring chunks
    batch_size: int = DEFAULT_BATCH_SIZE  # chunks (x channels) per forward pass
    precision: str = "32"  # auto | 32 | bf16 (audio_superres.precision); the configs say auto

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "precision", normalise_precision(self.precision, "inference.precision")
        )
        for name in ("chunk", "overlap", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"inference.{name} must be an integer, got {value!r}")
        if self.chunk < 2 or not 0 <= self.overlap < self.chunk or self.batch_size < 1:
            raise ValueError(
                f"inference needs chunk >= 2, 0 <= overlap < chunk and batch_size >= 1, got "
                f"chunk={self.chunk} overlap={self.overlap} batch_size={self.batch_size}"
            )

    def kwargs(self) -> dict[str, Any]:
        """`super_resolve(model, lr, ratio, **settings.kwargs())`."""
        return {
            "chunk": self.chunk,
            "overlap": self.overlap,
            "batch_size": self.batch_size,
            "precision": self.precision,
        }


class _Reader(Protocol):
    def read(self, frames: int, dtype: str, always_2d: bool) -> np.ndarray: ...


class _Writer(Protocol):
    def write(self, data: np.ndarray) -> None: ...


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """`auto` -> CUDA when available, else CPU; `cuda` without a GPU, or a name that is not a
    device, is a ConfigError (a ValueError) naming the setting."""
    if isinstance(device, torch.device):
        return device
    name = str(device).lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name in ("cuda", "gpu") or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device={device} was asked for, but no CUDA device is available "
                "(torch.cuda.is_available() is False): use device=cpu or device=auto"
            )
        return torch.device("cuda" if name == "gpu" else name)
    if name == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"device must be one of auto, cpu, cuda (or cuda:N); got device={device}")


def hr_alignment(model: nn.Module | Callable[[Tensor], Tensor]) -> int:
    """HR sample multiple at which the model's strided/patched processing repeats itself:
    `SuperResModel.chunk_alignment`; 1 for a plain function (no grid)."""
    if not isinstance(model, SuperResModel):
        return 1
    align = model.chunk_alignment
    if isinstance(align, bool) or not isinstance(align, int) or align < 1:
        name = type(model).__name__
        raise TypeError(f"{name}.chunk_alignment must be a positive int, got {align!r}")
    return align


def model_context(model: nn.Module | Callable[[Tensor], Tensor]) -> int | None:
    """LR samples each side that one output sample depends on (`SuperResModel.context`);
    None (unknown: the overlap is taken as given) for a plain function."""
    if not isinstance(model, SuperResModel):
        return None
    context = model.context
    if context is not None and (
        isinstance(context, bool) or not isinstance(context, int) or context < 0
    ):
        name = type(model).__name__
        raise TypeError(f"{name}.context must be a non-negative int or None, got {context!r}")
    return context


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


def plan_chunks(
    m: int,
    ratio: int,
    chunk: int,
    overlap: int,
    align_hr: int = 1,
    context: int | None = None,
) -> ChunkPlan:
    """Chunk starts for an LR signal of `m` samples (the rules: this module's docstring).

    Every start is a multiple of `align_hr` in HR samples, the last chunk ends at `m`, only
    neighbouring chunks overlap (overlap <= hop), and the discarded quarter of every overlap
    covers `context` LR samples. Raises ConfigError for settings no plan can honour.
    """
    if m < 1:
        raise ValueError(f"cannot super-resolve an empty signal (length {m})")
    if chunk < 2 or overlap < 0:
        raise ConfigError(
            f"chunked inference needs chunk >= 2 and overlap >= 0, got chunk={chunk} "
            f"overlap={overlap}"
        )
    if 2 * overlap > chunk:
        raise ConfigError(
            f"overlap={overlap} is more than half of chunk={chunk}: three chunks would overlap "
            f"and their crossfade weights would not sum to one; use overlap <= {chunk // 2}"
        )
    if align_hr < 1:
        raise ConfigError(f"the chunk alignment must be >= 1 HR samples, got {align_hr}")
    align_lr = align_hr // math.gcd(align_hr, ratio)
    if context is not None and overlap < 4 * context:
        _log_once(
            f"chunked inference: overlap raised from {overlap} to {4 * context} LR samples, so "
            f"its discarded outer quarter covers the model's context ({context} LR samples)"
        )
        overlap = 4 * context
    hop = (chunk - overlap) // align_lr * align_lr
    if hop < max(overlap, 1):
        # shortest chunk whose hop is an aligned multiple of at least the overlap
        hop = max(1, -(-overlap // align_lr)) * align_lr
        _log_once(
            f"chunked inference: chunk raised from {chunk} to {hop + overlap} LR samples: with "
            f"overlap={overlap} and hops on multiples of {align_lr} LR samples (the model's "
            f"chunk_alignment {align_hr} HR samples at ratio {ratio}), no shorter chunk keeps "
            "every overlap within its two neighbours"
        )
        chunk = hop + overlap
    overlap = min(chunk - hop, hop)
    chunk = hop + overlap
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


def chunk_window(plan: ChunkPlan, ratio: int, k: int) -> np.ndarray:
    """HR weights of chunk k's output in the overlap-add (they sum to one at every sample)."""
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
    model: Callable[[Tensor], Tensor],
    rows: np.ndarray,
    device: torch.device,
    precision: PrecisionChoice,
) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32)).to(device)
    with autocast(device, precision):
        y = model(x)
    return y.float().cpu().numpy()


def resolve_precision(precision: str | PrecisionChoice, device: torch.device) -> PrecisionChoice:
    """`choose_precision` for inference on `device`, its choice logged once per process."""
    if isinstance(precision, PrecisionChoice):
        return precision
    choice = choose_precision(precision, device)
    _log_once(f"inference {choice.describe()}")
    return choice


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
    context: int | None,
    precision: PrecisionChoice,
) -> int:
    """The core: `read(n)` gives the next n LR frames `(C, n)`, `write` takes HR `(C, n)`."""
    plan = plan_chunks(m, ratio, chunk, overlap, align_hr, context)
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
        rows = rows.reshape(g * c, length)
        out = _run_model(model, rows, device, precision).reshape(g, c, length * ratio)
        for i, k in enumerate(group):
            start_hr = plan.starts[k] * ratio
            end_hr = start_hr + out.shape[-1]
            if end_hr - acc_start > acc.shape[1]:
                grow = np.zeros((channels, end_hr - acc_start - acc.shape[1]), dtype=np.float32)
                acc = np.concatenate([acc, grow], axis=1)
            weights = chunk_window(plan, ratio, k)
            acc[:, start_hr - acc_start : end_hr - acc_start] += out[i] * weights
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
    precision: str | PrecisionChoice = "32",
) -> Tensor:
    """Super-resolve an in-memory LR signal `(C, m)` or `(m,)` -> `(C, m*ratio)` / `(m*ratio,)`.

    Each channel (row) is processed separately; the result is float32 on the CPU (on the input's
    device when that is a CUDA tensor). `model` maps LR `(B, m)` -> HR `(B, m * ratio)`; it is put
    in eval mode and moved to `device`. `align_hr` defaults to `hr_alignment(model)`.
    `precision`: 32 (float32, whatever autocast the caller is in), bf16 (autocast) or auto
    (bf16 where `device` computes it natively: `audio_superres.precision`).
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
            model,
            read,
            parts.append,
            m,
            channels,
            ratio,
            chunk,
            overlap,
            batch_size,
            dev,
            align,
            model_context(model),
            resolve_precision(precision, dev),
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
    precision: str | PrecisionChoice = "32",
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
        return _chunked(
            model,
            read,
            write,
            m,
            c,
            ratio,
            chunk,
            overlap,
            batch_size,
            dev,
            align,
            model_context(model),
            resolve_precision(precision, dev),
        )
