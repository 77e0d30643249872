"""The core figures of `python -m audio_superres.bench` (`peak`, `model`, `loader`, `infer`,
`prepare`; the command is `bench/cli.py`), each measured against this machine's own limit.

- `peak`: the machine's measured limits in this run: fp32 matmul GFLOP/s and the best conv1d
  GFLOP/s over shapes of the paper U-Net's heavy layers, for inference (forward only) and for
  training (forward + backward w.r.t. input and weights, counted as 3x the forward FLOPs); bf16
  too on a GPU. Every throughput below is reported as a ratio to the matching peak, so a busy or
  different machine still gives a meaningful figure.
- `model`: training (make_lowres + forward + loss + backward + Adam) and inference (forward under
  `torch.inference_mode`) of each model: seconds of audio per second, achieved GFLOP/s counted
  from the layers (`models.summary`; a training step counts 3x the forward: backward ~2x) and
  the ratio to the conv1d training peak (`ratio_to_conv1d_train_peak`) or forward peak
  (`ratio_to_conv1d_forward_peak`).
- `loader`: the training DataLoader alone (batches/s) and, for every trained model, the ratio of
  audio the loader supplies per second to the audio a training step consumes.
- `infer`: real-time factor of chunked (`inference.super_resolve`) vs whole-file inference, and
  the peak resident memory of streaming a short then a long file
  (`inference.super_resolve_stream`) in a fresh process, so no earlier figure inflates it.
- `prepare`: corpus preparation (decode + resample into the cache) of synthetic 48 kHz FLAC, in
  hours of audio per minute (`bench.prepare`'s corpus, `data.cache.build_cache`).

Timings are best-of-N (the least disturbed repeat on a shared machine). They never enter tests.
"""

from __future__ import annotations

import contextlib
import json
import math
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from audio_superres.bench.records import emit
from audio_superres.precision import autocast, choose_precision, cpu_bf16_units

CORE_FIGURES = ("peak", "model", "loader", "infer", "prepare")
DEFAULT_MODELS = ("audiounet", "audiounet_small", "tfilm")
SAMPLE_RATE = 16000
RATIO = 4

# conv1d shapes (batch, c_in, c_out, kernel, length) of the paper U-Net's heavy layers (ratio 4,
# 8192-sample patches): the up-block convs (1024->1024 k17, 1024->768 k33, 768->256 k65) and a
# down-block conv (384->512 k17) hold ~95% of its FLOPs.
CONV_SHAPES = ((1, 1024, 1024, 17, 1024), (1, 1024, 768, 33, 2048),
               (1, 768, 256, 65, 4096), (2, 384, 512, 17, 4096))
CONV_SHAPES_QUICK = ((1, 64, 64, 9, 512), (1, 32, 64, 17, 1024))
# Linear shapes (rows, in, out): AP-BWE small's MLPs over 16 x 8192-sample patches (1648 frames x
# 128 -> 384), and a large square one (the matmul units' limit)
LINEAR_SHAPES = ((1648, 128, 384), (8192, 1024, 1024))
LINEAR_SHAPES_QUICK = ((256, 64, 192),)


def resolve_device(name: str) -> torch.device:
    """`auto` -> CUDA when available, else CPU; asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda was asked for, but no CUDA device is available")
    if name not in ("cpu", "cuda"):
        raise SystemExit(f"error: --device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_time(fn: Callable[[], Any], repeats: int, device: torch.device, warmup: int = 1) -> float:
    """Best wall time of `repeats` calls after `warmup` calls (device work included)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    best = math.inf
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def precisions_of(asked: Sequence[str], device: torch.device) -> list[str]:
    """The precisions a benchmark runs in (`32`, `bf16`), `auto` resolved for `device` as
    train.py resolves it (`audio_superres.precision`); each once, in the order asked."""
    names = [choose_precision(p, device).name for p in asked]
    return list(dict.fromkeys(names))


def peak_dtypes(device: torch.device, precisions: Sequence[str]) -> list[tuple[str, torch.dtype]]:
    """float32 always (the reference), bf16 when a model runs in it or the device computes it."""
    want_bf16 = "bf16" in precisions or choose_precision("auto", device).name == "bf16"
    return [("fp32", torch.float32)] + ([("bf16", torch.bfloat16)] if want_bf16 else [])


def _context(device: torch.device) -> dict[str, Any]:
    ctx = {"device": device.type, "threads": torch.get_num_threads(), "torch": torch.__version__}
    if device.type == "cuda":
        ctx["gpu"] = torch.cuda.get_device_name(device)
    else:
        ctx["cpu"] = platform.processor() or platform.machine()
    return ctx


# ---- the machine's limit --------------------------------------------------------------------


def conv1d_seconds(conv: nn.Module, x: torch.Tensor, device: torch.device, repeats: int,
                   train: bool) -> float:
    """Best time of one conv1d forward (`train=False`, under inference_mode) or of forward plus
    backward w.r.t. both the input and the weights (`train=True`), as in a training step."""
    if not train:
        with torch.inference_mode():
            return best_time(lambda: conv(x), repeats, device)
    x = x.detach().requires_grad_(True)
    with torch.no_grad():
        grad_out = torch.randn_like(conv(x))

    def forward_backward() -> None:
        x.grad = None
        conv.zero_grad(set_to_none=True)
        conv(x).backward(grad_out)

    return best_time(forward_backward, repeats, device)


def machine_peak(device: torch.device, quick: bool = False, repeats: int = 3,
                 precisions: Sequence[str] = ("auto",)) -> dict[str, Any]:
    """Measured limits of this run: matmul and Linear GFLOP/s, and the best conv1d GFLOP/s over
    the U-Net layer shapes for inference (forward only) and for training (forward + backward
    w.r.t. input and weights, counted as 3x the forward FLOPs, as the training figures are); in
    float32, and in bf16 beside it where a model runs in bf16 or the device computes bf16
    natively (GPU, or a CPU with AMX-BF16 / AVX512-BF16). Training throughput is reported
    against the training peak of its own precision, inference against the forward peak."""
    n = 512 if quick else (8192 if device.type == "cuda" else 2048)
    shapes = CONV_SHAPES_QUICK if quick else CONV_SHAPES
    out: dict[str, Any] = {"cpu_bf16_units": cpu_bf16_units() if device.type == "cpu" else None}
    dtypes = peak_dtypes(device, precisions_of(precisions, device))
    for tag, dtype in dtypes:
        with torch.inference_mode():
            a = torch.randn(n, n, device=device, dtype=dtype)
            b = torch.randn(n, n, device=device, dtype=dtype)
            out[f"matmul_{tag}_gflops"] = round(
                2 * n**3 / best_time(lambda a=a, b=b: a @ b, repeats, device) / 1e9, 1)
            per_linear = {}
            for rows, cin, cout in LINEAR_SHAPES_QUICK if quick else LINEAR_SHAPES:
                layer = nn.Linear(cin, cout).to(device, dtype)
                x = torch.randn(rows, cin, device=device, dtype=dtype)
                seconds = best_time(lambda layer=layer, x=x: layer(x), repeats, device)
                gflops = 2 * rows * cin * cout / seconds / 1e9
                per_linear[f"{rows}x{cin}->{cout}"] = round(gflops, 1)
            out[f"linear_{tag}_gflops"] = max(per_linear.values())
            out[f"linear_{tag}_by_shape"] = per_linear
        for mode, flop_factor in (("forward", 1), ("train", 3)):
            per_shape = {}
            for batch, cin, cout, k, length in shapes:
                batch *= 32 if device.type == "cuda" else 1  # enough work to fill a GPU
                conv = nn.Conv1d(cin, cout, k, padding=k // 2).to(device, dtype)
                x = torch.randn(batch, cin, length, device=device, dtype=dtype)
                flops = flop_factor * 2 * batch * length * cin * cout * k
                seconds = conv1d_seconds(conv, x, device, repeats, train=mode == "train")
                per_shape[f"{batch}x{cin}->{cout}k{k}L{length}"] = round(flops / seconds / 1e9, 1)
            best = max(per_shape, key=per_shape.__getitem__)
            out[f"conv1d_{mode}_{tag}_gflops"] = per_shape[best]
            out[f"conv1d_{mode}_{tag}_best_shape"] = best
            out[f"conv1d_{mode}_{tag}_by_shape"] = per_shape
        out[f"conv1d_train_vs_forward_{tag}"] = round(
            out[f"conv1d_train_{tag}_gflops"] / out[f"conv1d_forward_{tag}_gflops"], 3)
    if len(dtypes) == 2:  # what bf16 buys on this machine, per kind of layer
        for key in ("matmul", "linear", "conv1d_forward", "conv1d_train"):
            ratio = out[f"{key}_bf16_gflops"] / out[f"{key}_fp32_gflops"]
            out[f"{key}_bf16_vs_fp32"] = round(ratio, 2)
    emit({"figure": "machine_peak", **_context(device), "matmul_n": n, **out})
    return out


# ---- models ---------------------------------------------------------------------------------


def build_model(name: str, ratio: int = RATIO, device: str | torch.device = "cpu") -> nn.Module:
    """A model of `conf/model/<name>.yaml` (untrained), as train.py builds it."""
    from omegaconf import OmegaConf

    from audio_superres.checkpoint import instantiate_trusted
    from audio_superres.runs import compose_config

    cfg = compose_config([f"model={name}", f"ratio={ratio}"])
    with torch.device(device):
        return instantiate_trusted(OmegaConf.to_container(cfg.model, resolve=True), "model")


def forward_gflop_per_audio_second(name: str, ratio: int = RATIO) -> float:
    """Forward GFLOP per second of audio, counted from the layers (on the meta device where
    every op has a meta kernel)."""
    from audio_superres.models.summary import counted_summary

    summary = counted_summary(lambda device: build_model(name, ratio, device), ratio, SAMPLE_RATE)
    return float(summary["gflop_per_second"])


def default_batch(name: str, device: torch.device, quick: bool) -> int:
    """Batch per step: 64 on a GPU (the paper U-Net's MFU figure); on a CPU one patch of the
    paper-size models (a step takes seconds) and 16 of the small ones."""
    if quick:
        return 2
    if device.type == "cuda":
        return 64
    return 16 if name.endswith("_small") or name in ("dnn", "cubic") else 1


def model_throughput(
    name: str,
    device: torch.device,
    peak: dict[str, Any] | None,
    *,
    batch_size: int,
    patch_len: int,
    steps: int,
    precision: str = "32",
    compile_model: bool = False,
    fused_adam: bool = True,
    spec_peak_tflops: float | None = None,
    lowpass: str = "chebyshev",
) -> dict[str, float]:
    """Training-step and inference throughput of one model in `precision` (32, bf16 or auto),
    against the measured peak of that precision; returns audio seconds per second."""
    from audio_superres.dsp.lowpass import make_lowres
    from audio_superres.losses import RMSELoss

    precision = choose_precision(precision, device).name
    torch.manual_seed(0)
    gflop_fwd = forward_gflop_per_audio_second(name)
    model = build_model(name).to(device)
    run = torch.compile(model) if compile_model else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=fused_adam or None)
    loss_fn = RMSELoss()
    patch_len -= patch_len % RATIO
    hr = 0.1 * torch.randn(batch_size, patch_len, device=device)
    audio_s = batch_size * patch_len / SAMPLE_RATE
    dtype_tag = "bf16" if precision == "bf16" else "fp32"
    settings = {"model": name, "batch_size": batch_size, "patch_len": patch_len, "ratio": RATIO,
                "precision": precision, "compile": compile_model, "fused_adam": fused_adam,
                "steps": steps,
                "forward_gflop_per_audio_s": round(gflop_fwd, 2), **_context(device)}

    def train_step() -> None:
        with autocast(device, precision):
            lr = make_lowres(hr, RATIO, lowpass)
            loss = loss_fn(run(lr), hr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    lr_in = make_lowres(hr, RATIO, lowpass)

    def infer() -> None:
        with torch.inference_mode(), autocast(device, precision):
            run(lr_in)

    rates = {}
    for kind, fn, flop_factor, peak_mode in (("train", train_step, 3.0, "train"),
                                             ("infer", infer, 1.0, "forward")):
        model.train(kind == "train")
        seconds = best_time(fn, steps, device)
        audio_rate = audio_s / seconds
        gflops = flop_factor * gflop_fwd * audio_rate
        record = {"figure": f"{kind}_throughput", **settings,
                  "step_s": round(seconds, 4), "audio_s_per_s": round(audio_rate, 3),
                  "achieved_gflops": round(gflops, 2)}
        peak_gflops = (peak or {}).get(f"conv1d_{peak_mode}_{dtype_tag}_gflops")
        if peak_gflops:  # training against the training peak, inference against the forward
            record[f"peak_conv1d_{peak_mode}_gflops"] = peak_gflops
            record[f"ratio_to_conv1d_{peak_mode}_peak"] = round(gflops / peak_gflops, 3)
        if spec_peak_tflops:  # model FLOP utilisation against the vendor's dense peak
            record["spec_peak_tflops"] = spec_peak_tflops
            record["mfu"] = round(gflops / (1000 * spec_peak_tflops), 4)
        emit(record)
        rates[kind] = audio_rate
    return rates


# ---- data loading ---------------------------------------------------------------------------


def loader_throughput(batch_size: int, patch_len: int, batches: int, workers: int,
                      data_root: str | None, cache_dir: str) -> float:
    """Batches/s of the training DataLoader alone (the demo corpus, or a folder)."""
    from audio_superres.data import DemoSpeechCorpus, FolderCorpus, SuperResDataModule

    corpus: Any = DemoSpeechCorpus if data_root is None else FolderCorpus
    dm = SuperResDataModule(
        corpus=corpus, root=data_root or "data/demo_speech",
        test_speakers=None if data_root is None else [],
        sample_rate=SAMPLE_RATE, ratio=RATIO, patch_len=patch_len, batch_size=batch_size,
        num_workers=workers, patches_per_epoch=(batches + 1) * batch_size, cache_dir=cache_dir,
    )
    dm.prepare_data()
    dm.setup("fit")
    batches_of_epoch = iter(dm.train_dataloader())
    next(batches_of_epoch)  # worker start-up is not throughput (one batch more was asked for)
    t0 = time.perf_counter()
    n = sum(1 for _ in batches_of_epoch)
    rate = n / (time.perf_counter() - t0)
    emit({"figure": "loader", "batches_per_s": round(rate, 1),
          "audio_s_per_s": round(rate * batch_size * patch_len / SAMPLE_RATE, 1),
          "batch_size": batch_size, "patch_len": patch_len, "num_workers": workers,
          "batches": n, "data_root": data_root or "data/demo_speech"})
    return rate * batch_size * patch_len / SAMPLE_RATE


# ---- inference: chunked vs whole, memory vs length --------------------------------------------


class _NoiseReader:
    """A synthetic mono LR 'file' read block by block: nothing but the streaming path holds it."""

    def __init__(self, frames: int) -> None:
        self.frames, self.channels, self._left = frames, 1, frames
        self._rng = torch.Generator().manual_seed(0)

    def read(self, n: int, dtype: str = "float32", always_2d: bool = True) -> Any:
        n = min(n, self._left)
        self._left -= n
        return (0.1 * torch.randn(n, 1, generator=self._rng)).numpy()


class _Sink:
    def write(self, data: Any) -> None:
        pass


def _rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stream_peak_memory(model_name: str, seconds: Sequence[float],
                       device: str = "cpu") -> list[dict[str, Any]]:
    """Peak RSS after streaming each length in turn (shortest first) through a model.

    Run it in a fresh process: the peak resident set only grows, so after the short file it is
    the short file's peak and after the long one the long file's (or the short's, if larger).
    """
    from audio_superres.inference import super_resolve_stream

    model = build_model(model_name).eval()
    dev = resolve_device(device)
    out = []
    for s in sorted(seconds):
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        super_resolve_stream(model, _NoiseReader(int(s * SAMPLE_RATE / RATIO)), _Sink(), RATIO,
                             device=dev)
        _sync(dev)
        wall = time.perf_counter() - t0
        row = {"seconds_audio": s, "peak_rss_mib": round(_rss_mib(), 1), "wall_s": round(wall, 3),
               "realtime_factor": round(s / wall, 2)}
        if dev.type == "cuda":
            row["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        out.append(row)
    return out


def _child_peak_memory(model_name: str, seconds: Sequence[float],
                       device: str) -> list[dict[str, Any]]:
    code = ("import json; from audio_superres.bench.core import stream_peak_memory as f; "
            f"print(json.dumps(f({model_name!r}, {list(seconds)!r}, {device!r})))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False)
    if res.returncode != 0:
        raise RuntimeError(f"inference memory benchmark failed:\n{res.stderr.strip()}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def inference_figures(model_name: str, device: torch.device, short_s: float, long_s: float,
                      repeats: int) -> None:
    """Chunked vs whole-file real-time factor; peak memory of a long vs a short file."""
    from audio_superres.inference import super_resolve

    model = build_model(model_name).to(device).eval()
    lr = 0.1 * torch.randn(1, int(short_s * SAMPLE_RATE / RATIO), device=device)

    def whole() -> None:
        with torch.inference_mode():
            model(lr)

    t_whole = best_time(whole, repeats, device)
    t_chunk = best_time(lambda: super_resolve(model, lr, RATIO, device=device), repeats, device)
    emit({"figure": "inference_rtf", "model": model_name, "seconds_audio": short_s,
          **_context(device), "whole_realtime_factor": round(short_s / t_whole, 2),
          "chunked_realtime_factor": round(short_s / t_chunk, 2),
          "chunked_vs_whole_ratio": round(t_whole / t_chunk, 3)})
    short, long = _child_peak_memory(model_name, (short_s, long_s), device.type)
    record = {"figure": "inference_memory", "model": model_name, **_context(device),
              "short_s": short_s, "long_s": long_s,
              "short_peak_rss_mib": short["peak_rss_mib"],
              "long_peak_rss_mib": long["peak_rss_mib"],
              "long_vs_short_peak_ratio": round(long["peak_rss_mib"] / short["peak_rss_mib"], 3),
              "long_realtime_factor": long["realtime_factor"]}
    if "peak_cuda_mib" in long:
        record["short_peak_cuda_mib"] = short["peak_cuda_mib"]
        record["long_peak_cuda_mib"] = long["peak_cuda_mib"]
    emit(record)


# ---- corpus preparation ---------------------------------------------------------------------


def prepare_throughput(hours: float, workers: int, out: Path | None = None) -> float:
    """Hours of 48 kHz FLAC decoded and resampled into a 16 kHz cache per minute."""
    from audio_superres.bench.prepare import make_synthetic_corpus
    from audio_superres.data.cache import build_cache, resolve_workers
    from audio_superres.data.corpora import FolderCorpus

    with _workdir(out) as work:
        info = make_synthetic_corpus(work / "corpus", hours)
        cache_dir = work / "cache"
        shutil.rmtree(cache_dir, ignore_errors=True)
        t0 = time.perf_counter()
        build_cache(FolderCorpus(work / "corpus"), SAMPLE_RATE, cache_dir, workers,
                    progress=False)
        wall = time.perf_counter() - t0
        shutil.rmtree(cache_dir, ignore_errors=True)
    rate = float(info["hours"]) / (wall / 60)
    emit({"figure": "prepare", "hours_audio": round(float(info["hours"]), 4),
          "files": info["files"], "workers": resolve_workers(workers), "target_sr": SAMPLE_RATE,
          "wall_s": round(wall, 2), "hours_per_minute": round(rate, 4),
          "realtime_factor": round(float(info["hours"]) * 3600 / wall, 1)})
    return rate


@contextlib.contextmanager
def _workdir(out: Path | None) -> Iterator[Path]:
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        yield out
        return
    with tempfile.TemporaryDirectory(prefix="audio_superres_bench_") as tmp:
        yield Path(tmp)
