"""Config composition: debug/ presets, model size keys for every family, data configs built on
folder.yaml, the git-ignored local/ group, extras (printed config, warnings)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import OmegaConf

from audio_superres.checkpoint import instantiate_trusted

from .conftest import CONF_DIR, REPO
from .test_e2e import run


def compose_train(overrides: list[str], conf_dir: Path = CONF_DIR):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        return compose("train", overrides=overrides)


DEBUG_PROMISES = {
    "default": {"max_steps": 10, "detect_anomaly": True},
    "fdr": {"fast_dev_run": True},
    "overfit": {"overfit_batches": 1, "detect_anomaly": False},
    "limit": {"max_epochs": 3, "max_steps": -1, "limit_train_batches": 5,
              "limit_test_batches": 2, "check_val_every_n_epoch": 1},
    "profiler": {"max_steps": 20},
}


@pytest.mark.parametrize("name", sorted(DEBUG_PROMISES))
def test_debug_configs_compose_into_a_trainer(name: str, tmp_path: Path) -> None:
    assert sorted(p.stem for p in (CONF_DIR / "debug").glob("*.yaml")) == sorted(DEBUG_PROMISES)
    cfg = compose_train([f"debug={name}", f"paths.output_dir={tmp_path}"])
    assert cfg.task_name == "debug" and cfg.logger == {} and cfg.trainer.accelerator == "cpu"
    for key, value in DEBUG_PROMISES[name].items():
        assert cfg.trainer[key] == value, key
    trainer = instantiate(cfg.trainer, logger=False)
    if name == "profiler":
        from lightning.pytorch.profilers import SimpleProfiler

        assert isinstance(trainer.profiler, SimpleProfiler)
    if name == "fdr":
        assert trainer.fast_dev_run == 1


@pytest.mark.slow
def test_debug_fdr_through_train_py(tiny_corpus: Path, tmp_path: Path) -> None:
    """`python train.py debug=fdr` runs end to end, prints the resolved config first, and keeps
    Lightning's litlogger advertisement out of the console."""
    run_dir = tmp_path / "run"
    proc = run([str(REPO / "train.py"), "debug=fdr", "data=folder", f"data.root={tiny_corpus}",
                "data.test_speakers=[spk2]", "data.patch_len=2048", "data.batch_size=2",
                f"data.cache_dir={tmp_path / 'cache'}", "model_width=8", "model_depth=2",
                f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    log = proc.stdout + proc.stderr
    assert (run_dir / "metrics.json").is_file()
    config = log[log.index("config:"):]
    assert "fast_dev_run: true" in config and f"root: {tiny_corpus}" in config
    assert "filters:\n  - 8\n  - 16\n" in config  # resolved, model size keys applied
    assert "litlogger" not in log.lower()


SIZED = {
    "audiounet_small": ("filters", [32, 64, 128, 128], [16, 32, 64]),
    "tfilm_small": ("filters", [32, 64, 128, 128], [16, 32, 64]),
    "dnn": ("hidden_sizes", [1024, 1024, 1024], [16, 16, 16]),
}


@pytest.mark.parametrize("model", sorted(SIZED))
def test_model_width_and_depth_size_every_family(model: str) -> None:
    key, default, sized = SIZED[model]
    assert list(compose_train([f"model={model}"]).model[key]) == default  # unchanged defaults
    cfg = compose_train([f"model={model}", "model_width=16", "model_depth=3"])
    assert list(cfg.model[key]) == sized
    if key == "filters":
        assert list(cfg.model.kernels) == [9, 9, 9] and cfg.model.bottleneck_filters == 64
    net = instantiate_trusted(OmegaConf.to_container(cfg.model, resolve=True), "model")
    lr = torch.randn(1, 512)
    assert net(lr).shape == (1, 2048)


def test_paper_size_configs_are_explicit() -> None:
    """model_width/model_depth are for the CPU-size configs; the paper sizes stay as written."""
    cfg = compose_train(["model=audiounet", "model_width=16"])
    assert list(cfg.model.filters) == [128, 384, 512, 512]


DATAMODULE_KEYS = ("sample_rate", "ratio", "patch_len", "batch_size", "num_workers",
                   "patches_per_epoch", "val_max_files", "test_max_files", "cache_dir")


@pytest.mark.parametrize("data", sorted(p.stem for p in (CONF_DIR / "data").glob("*.yaml")))
def test_data_configs_build_on_folder_instead_of_restating_it(data: str) -> None:
    folder = OmegaConf.load(CONF_DIR / "data" / "folder.yaml")
    raw = OmegaConf.load(CONF_DIR / "data" / f"{data}.yaml")
    if data != "folder":
        parents = [d for d in raw.defaults if d != "_self_"]
        assert parents and parents[0] in {"folder", "vctk_multi"}, parents
        restated = [k for k in DATAMODULE_KEYS if k in raw and raw[k] == folder[k]]
        assert restated == [], f"{data}.yaml restates folder.yaml's {restated}"
        assert "_target_" not in raw
    cfg = compose_train([f"data={data}", "data.root=/somewhere"])
    assert cfg.data._target_ == folder._target_ and cfg.data.corpus._partial_
    for key in DATAMODULE_KEYS:
        assert key in cfg.data


def test_local_group_is_optional_git_ignored_and_merged_last(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    shutil.rmtree(conf / "local")
    (conf / "local").mkdir()
    assert compose_train([], conf).seed == 1234  # no local file: nothing changes
    (conf / "local" / "default.yaml").write_text(
        "# @package _global_\nseed: 99\ntrainer:\n  max_steps: 7\n")
    cfg = compose_train(["experiment=demo"], conf)
    assert cfg.seed == 99 and cfg.trainer.max_steps == 7  # after experiment=demo's 420
    ignored = subprocess.run(["git", "check-ignore", "-q", "conf/local/default.yaml"], cwd=REPO,
                             check=False)
    assert ignored.returncode == 0, "conf/local/default.yaml must be git-ignored"
    kept = subprocess.run(["git", "check-ignore", "-q", "conf/local/README.md"], cwd=REPO,
                          check=False)
    assert kept.returncode == 1


def test_extras_print_the_config_and_silence_warnings(caplog, recwarn) -> None:
    import logging
    import warnings

    from audio_superres.runs import apply_extras

    cfg = OmegaConf.create({"ratio": 4, "model": {"ratio": "${ratio}"}, "root": "???",
                            "extras": {"print_config": True, "ignore_warnings": False}})
    with caplog.at_level(logging.INFO, logger="audio_superres.runs"):
        apply_extras(cfg)  # a missing value does not stop it
    assert "config:" in caplog.text and "root: ???" in caplog.text
    assert "model:\n  ratio: 4\n" in caplog.text  # resolved
    with warnings.catch_warnings():
        cfg.extras.ignore_warnings = True
        apply_extras(cfg)
        warnings.warn("should be silenced", UserWarning, stacklevel=1)
    assert not [w for w in recwarn if "should be silenced" in str(w.message)]
