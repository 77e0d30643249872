"""Hyperparameter search: `python train.py hparams_search=demo_optuna` (Hydra's Optuna sweeper)
optimises the best validation value of `optimized_metric` that train.py returns."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from audio_superres.errors import ConfigError
from audio_superres.tasks.best_metric import BestMetric, metric_mode

from .conftest import CONF_DIR
from .test_sweep import tiny_train


def test_demo_search_space_composes() -> None:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["hparams_search=demo_optuna", "experiment=demo"],
                      return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and cfg.hydra.mode.name == "MULTIRUN"
    assert cfg.optimized_metric == "val/snr" and sweeper.direction == "maximize"
    assert set(sweeper.params) == {"optimizer.lr", "model_width", "model_depth", "loss"}


@pytest.mark.parametrize(
    ("metric", "mode"),
    [("val/snr", "max"), ("val/lsd", "min"), ("val/lsd_hf", "min"), ("val/si_sdr", "max"),
     ("val/snr_gain", "max"), ("val/lsd_gain", "max"), ("train/loss", "min")],
)
def test_metric_direction(metric: str, mode: str) -> None:
    assert metric_mode(metric) == mode


def test_unknown_metric_direction_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="optimized_metric='val/banana'"):
        BestMetric("val/banana")


def logged(job: Path, metric: str) -> list[float]:
    (path,) = job.rglob("metrics.csv")
    return [float(r[metric]) for r in csv.DictReader(path.open()) if r.get(metric)]


@pytest.mark.slow
def test_two_trial_search_minimising_lsd_through_train_py(tiny_corpus, tmp_path) -> None:
    from .test_e2e import run

    sweep_dir = tmp_path / "search"
    run(
        tiny_train(tiny_corpus, tmp_path / "cache")
        + [
            "hparams_search=demo_optuna",
            "optimized_metric=val/lsd",
            "hydra.sweeper.direction=minimize",
            "hydra.sweeper.n_trials=2",
            "hydra.sweeper.sampler.n_startup_trials=2",
            "trainer.num_sanity_val_steps=0",
            "trainer.val_check_interval=1",
            f"hydra.sweep.dir={sweep_dir}",
        ],
        cwd=tmp_path,
    )
    bests = {}
    for job in ("0", "1"):
        status = json.loads((sweep_dir / job / "status.json").read_text())
        assert status["status"] == "completed" and status["optimized_metric"] == "val/lsd"
        # the best (lowest) validation LSD of the run, not the SNR or the last value
        values = logged(sweep_dir / job, "val/lsd")
        assert len(values) == 2 and status["best"] == pytest.approx(min(values), rel=1e-6)
        bests[job] = status["best"]
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(min(bests.values()), rel=1e-6)
    assert set(results["best_params"]) == {"optimizer.lr", "model_width", "model_depth", "loss"}
    assert all(math.isfinite(v) for v in bests.values())
    rows = list(csv.DictReader((sweep_dir / "summary.csv").open()))
    assert [(r["job"], r["status"], r["optimized_metric"]) for r in rows] == [
        ("0", "completed", "val/lsd"), ("1", "completed", "val/lsd")]
