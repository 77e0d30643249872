"""Benchmarks that print one JSON line per figure, measured against this machine's own limit.

    python -m audio_superres.bench [peak] [loader] [train] [--model audiounet_small] [--steps 5]

`peak` measures fp32 matmul and conv1d GFLOP/s; `loader` the DataModule alone (batches/s) on the
demo corpus cache; `train` a real training step (make_lowres + model + loss + Adam) on random
audio, with the loader-to-step ratio when both ran. Timings never enter the tests.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from typing import Any

import torch


def _emit(record: dict[str, Any]) -> dict[str, Any]:
    print(json.dumps(record), flush=True)
    return record


def _best_time(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def machine_peak(repeats: int = 3) -> dict[str, float]:
    """fp32 GFLOP/s of a large matmul and of a U-Net-like conv1d (forward), best of `repeats`."""
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    matmul = 2 * n**3 / _best_time(lambda: a @ b, repeats) / 1e9
    conv = torch.nn.Conv1d(256, 256, 17, padding=8)
    x = torch.randn(16, 256, 1024)
    flops = 2 * 16 * 1024 * 256 * 256 * 17
    with torch.inference_mode():
        conv1d = flops / _best_time(lambda: conv(x), repeats) / 1e9
    out = {"matmul_gflops": round(matmul, 1), "conv1d_gflops": round(conv1d, 1)}
    _emit({"figure": "machine_peak", "threads": torch.get_num_threads(), **out,
           "cpu": platform.processor() or platform.machine()})
    return out


def loader_throughput(batches: int = 300, batch_size: int = 16, patch_len: int = 8192) -> float:
    """Batches/s of the training DataLoader alone on the demo corpus (builds it if needed)."""
    from audio_superres.data import DemoSpeechCorpus, SuperResDataModule

    dm = SuperResDataModule(
        corpus=DemoSpeechCorpus, root="data/demo_speech", test_speakers=None, sample_rate=16000,
        ratio=4, patch_len=patch_len, batch_size=batch_size, patches_per_epoch=batches * batch_size,
    )
    dm.prepare_data()
    dm.setup("fit")
    loader = dm.train_dataloader()
    t0 = time.perf_counter()
    n = sum(1 for _ in loader)
    rate = n / (time.perf_counter() - t0)
    _emit({"figure": "loader", "batches_per_s": round(rate, 1), "batch_size": batch_size,
           "patch_len": patch_len, "num_workers": 0})
    return rate


def train_throughput(model_name: str, steps: int, batch_size: int = 16, patch_len: int = 8192,
                     ratio: int = 4, peak: dict[str, float] | None = None) -> float:
    """Steps/s of a full training step; GFLOP/s relative to the measured conv1d peak."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from audio_superres.checkpoint import instantiate_trusted
    from audio_superres.dsp.lowpass import make_lowres
    from audio_superres.losses import RMSELoss
    from audio_superres.training import find_conf_dir

    with initialize_config_dir(config_dir=str(find_conf_dir()), version_base="1.3"):
        cfg = compose("train", overrides=[f"model={model_name}", f"ratio={ratio}"])
    model = instantiate_trusted(OmegaConf.to_container(cfg.model, resolve=True))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = RMSELoss()
    hr = torch.randn(batch_size, patch_len)

    def step() -> None:
        lr = make_lowres(hr, ratio, "chebyshev")
        loss = loss_fn(model(lr), hr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    seconds = _best_time(step, steps)
    rate = 1 / seconds
    record = {"figure": "train_step", "model": model_name, "batch_size": batch_size,
              "patch_len": patch_len, "ratio": ratio, "steps_per_s": round(rate, 3),
              "audio_s_per_s": round(batch_size * patch_len / 16000 * rate, 2)}
    _emit(record)
    return rate


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="*", default=["peak", "loader", "train"],
                        choices=["peak", "loader", "train"])
    parser.add_argument("--model", default="audiounet_small")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)
    peak = machine_peak() if "peak" in args.what else None
    loader = loader_throughput(batch_size=args.batch_size) if "loader" in args.what else None
    train = (train_throughput(args.model, args.steps, args.batch_size, peak=peak)
             if "train" in args.what else None)
    if loader and train:
        _emit({"figure": "loader_vs_train", "ratio": round(loader / train, 1),
               "loader_batches_per_s": round(loader, 1), "train_steps_per_s": round(train, 3)})


if __name__ == "__main__":
    main()
