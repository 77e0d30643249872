"""`python -m audio_superres.bench step`: an experiment's own training step, timed and profiled.

The `model` section times a model with a plain RMSE loss; an experiment's step also makes its
low-res input (`make_lowres` with the experiment's filter), computes its own losses (AP-BWE's
STFT-domain terms) and steps its own optimiser. This section builds the LightningModule exactly as
train.py does (`conf/train.yaml` + `experiment=...`) and times

    make_inputs -> generate -> objective.reconstruction -> backward -> optimiser step

on random patches of the experiment's batch shape, in the asked precision, without the Trainer
(no data loading, logging or validation: what train.py adds on top is the difference between
this figure and its it/s). `--profile N` prints torch.profiler's top N operators by self CPU time
over the timed steps, the table docs/performance.md quotes. Automatic optimisation only (the
regression objective; an adversarial step is two optimisers and is not timed here).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from audio_superres.bench.records import emit
from audio_superres.precision import autocast, choose_precision


def build_experiment_module(experiment: str, overrides: Sequence[str] = ()) -> Any:
    """The LightningModule and config of `train.py experiment=<experiment> [overrides]`."""
    from audio_superres.runs import compose_config
    from audio_superres.tasks.train import build_module

    cfg = compose_config([f"experiment={experiment}", *overrides])
    return build_module(cfg), cfg


def first_optimizer(configured: Any) -> torch.optim.Optimizer:
    """The optimiser out of what `configure_optimizers` returns under automatic optimisation:
    the optimiser, or `{"optimizer": ..., "lr_scheduler": ...}` when there is a schedule."""
    return configured["optimizer"] if isinstance(configured, dict) else configured


def training_step_figure(
    experiment: str,
    device: torch.device,
    precision: str = "auto",
    *,
    steps: int = 10,
    warmup: int = 3,
    batch_size: int | None = None,
    patch_len: int | None = None,
    overrides: Sequence[str] = (),
    profile_rows: int = 0,
) -> dict[str, Any]:
    """Median seconds per training step of `experiment` (and steps/s); with `profile_rows`, the
    profiler's top operators over the timed steps are printed after the JSON line."""
    choice = choose_precision(precision, device)
    module, cfg = build_experiment_module(experiment, [f"precision={choice.name}", *overrides])
    if not module.automatic_optimization:
        raise SystemExit(f"bench step: experiment={experiment} trains adversarially; "
                         "only automatic optimisation is timed")
    module.to(device).train()
    optimizer = first_optimizer(module.configure_optimizers())
    batch_size = batch_size or int(cfg.data.batch_size)
    patch_len = patch_len or int(cfg.data.patch_len)
    gen = torch.Generator().manual_seed(0)
    batches = [0.1 * torch.randn(batch_size, patch_len, generator=gen).to(device)
               for _ in range(4)]
    rng = np.random.default_rng(0)

    def step(i: int) -> None:
        with autocast(device, choice):
            hr, lr = module.make_inputs(batches[i % len(batches)], rng)
            pred, spectrum = module.generate(lr)
            loss, _ = module.objective.reconstruction(pred, hr, spectrum)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for i in range(warmup):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    times = []
    with contextlib.ExitStack() as stack:
        profiler = None
        if profile_rows:
            from torch.profiler import ProfilerActivity, profile

            profiler = stack.enter_context(profile(activities=[ProfilerActivity.CPU]))
        for i in range(steps):
            start = time.perf_counter()
            step(i)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
    seconds = float(np.median(times))
    record = {"figure": "training_step", "experiment": experiment, "model": cfg.model._target_,
              "loss": cfg.loss._target_, "overrides": list(overrides),
              "precision": choice.name, "precision_reason": choice.reason,
              "batch_size": batch_size, "patch_len": patch_len, "steps": steps,
              "threads": torch.get_num_threads(), "step_s": round(seconds, 4),
              "steps_per_s": round(1.0 / seconds, 2),
              "profiled": bool(profile_rows)}
    emit(record)
    if profiler is not None:
        print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=profile_rows))
    return record
