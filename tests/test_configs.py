"""Every config file composes and instantiates; a fast_dev_run trains through the real code."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from audio_superres.checkpoint import instantiate_trusted
from audio_superres.dsp.lowpass import as_lowpass_spec
from audio_superres.losses import APBWELoss
from audio_superres.tasks.train import build_module, instantiate_group, train

from .conftest import CONF_DIR


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def compose_train(overrides: list[str], tmp_path: Path) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
        cfg.paths.data_dir = str(tmp_path / "data")
    return cfg


def test_config_groups_exist():
    for group in (
        "data",
        "lowpass",
        "model",
        "loss",
        "objective",
        "optimizer",
        "scheduler",
        "trainer",
        "logger",
        "callbacks",
    ):
        assert group_options(group), group
    assert not (CONF_DIR / "optim").exists()  # replaced by optimizer/ and scheduler/


@pytest.mark.parametrize("model", group_options("model"))
@pytest.mark.parametrize("ratio", [2, 4])
def test_every_model_config_instantiates(model, ratio, tmp_path):
    cfg = compose_train([f"model={model}", f"ratio={ratio}", "logger=none"], tmp_path)
    net = instantiate_trusted(OmegaConf.to_container(cfg.model, resolve=True))
    assert net.ratio == ratio
    out = net(torch.randn(1, 96))
    assert out.shape == (1, 96 * ratio)


@pytest.mark.parametrize("lowpass", group_options("lowpass"))
def test_every_lowpass_config_is_a_valid_spec(lowpass, tmp_path):
    cfg = compose_train([f"lowpass={lowpass}"], tmp_path)
    spec = as_lowpass_spec(OmegaConf.to_container(cfg.lowpass))
    # robust is a random spec that also draws aliased / resampled / one-pass / MP3 examples
    assert spec.kind == {"robust": "random"}.get(lowpass, lowpass)
    assert spec.draws_degradations == (lowpass == "robust")


@pytest.mark.parametrize("loss", group_options("loss"))
def test_every_loss_config_instantiates(loss, tmp_path):
    cfg = compose_train([f"loss={loss}"], tmp_path)
    fn = instantiate(cfg.loss)
    x = torch.randn(2, 64)
    # identical signals: near 0 (an RMSE term keeps its sqrt(1e-6) floor, times its weight)
    assert fn(x, x + 1) > 0.5 and fn(x, x) < 1e-2 * fn(x, x + 1)


@pytest.mark.parametrize("objective", group_options("objective"))
@pytest.mark.parametrize("optimizer", group_options("optimizer"))
@pytest.mark.parametrize("scheduler", group_options("scheduler"))
def test_every_objective_optimizer_scheduler_config_builds(
    objective, optimizer, scheduler, tmp_path
):
    # AP-BWE's objective trains a spectral generator on its own spectrum: AP-BWE and its loss
    spectral = ["model=apbwe_small", "loss=apbwe"] if objective.endswith("apbwe") else []
    cfg = compose_train(
        [f"objective={objective}", f"optimizer={optimizer}", f"scheduler={scheduler}", *spectral],
        tmp_path,
    )
    module = build_module(cfg)
    configured = module.configure_optimizers()
    optimizers = configured[0] if isinstance(configured, tuple) else [configured]
    assert (len(optimizers) == 2) == objective.startswith("adversarial")


@pytest.mark.parametrize("logger", group_options("logger"))
def test_every_logger_config_instantiates(logger, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    cfg = compose_train([f"logger={logger}"], tmp_path)
    loggers = instantiate_group(cfg.get("logger"))
    assert len(loggers) == (0 if logger == "none" else 1)


@pytest.mark.parametrize("trainer", group_options("trainer"))
def test_every_trainer_config_composes(trainer, tmp_path):
    cfg = compose_train([f"trainer={trainer}"], tmp_path)
    assert cfg.trainer._target_ == "lightning.pytorch.Trainer"
    if trainer != "gpu" or torch.cuda.is_available():
        callbacks = instantiate_group(cfg.callbacks)
        instantiate(cfg.trainer, callbacks=callbacks, logger=False)


@pytest.mark.parametrize("data", group_options("data"))
def test_every_data_config_instantiates(data, tmp_path, tiny_corpus):
    overrides = [f"data={data}"]
    if data == "folder":
        overrides += [f"data.root={tiny_corpus}", "data.test_speakers=[spk2]"]
    cfg = compose_train(overrides, tmp_path)
    dm = instantiate(cfg.data)
    assert dm.corpus is not None


def test_experiment_demo_composes(tmp_path):
    cfg = compose_train(["experiment=demo"], tmp_path)
    assert cfg.ratio == 4 and cfg.model.filters == [32, 64, 128, 128]
    assert cfg.lowpass.kind == "chebyshev" and cfg.trainer.accelerator == "cpu"
    module = build_module(cfg)
    assert module.hparams["data_config"]["test_speakers"] == ["de", "en", "en_GB", "it", "ru"]


def test_experiment_demo_apbwe_composes_and_builds(tmp_path):
    """make demo-apbwe's recipe: AP-BWE at CPU size on the U-Net demo's task and budget, AP-BWE's
    losses with the waveform-tracking terms raised."""
    cfg = compose_train(["experiment=demo_apbwe"], tmp_path)
    assert cfg.model._target_.endswith("APBWE") and cfg.model.channels == 128
    assert cfg.ratio == 4 and cfg.lowpass.kind == "chebyshev"
    assert cfg.trainer.max_time == "00:00:15:00"  # the U-Net demo's budget
    module = build_module(cfg)
    loss = module.objective.loss
    assert isinstance(loss, APBWELoss) and loss.waveform == "rmse"
    assert loss.weights["waveform"] > loss.weights["amplitude"]
    x = torch.randn(2, 4096)
    floor = loss.weights["waveform"] * 1e-3  # RMSE's sqrt(1e-6) floor, the only non-zero part
    assert loss(x, x) == pytest.approx(floor, rel=1e-3)
    assert loss(x, x.roll(7, dims=1)) > 10 * floor


def test_experiment_demo_apbwe_mrstft_keeps_the_recipes_apbwe_balance(tmp_path):
    """The tried recipe is the demo's plus one term: the APBWE term keeps loss/apbwe_waveform's
    weights inside the sum, and the best checkpoint is chosen on validation LSD."""
    cfg = compose_train(["experiment=demo_apbwe_mrstft"], tmp_path)
    recipe = compose_train(["experiment=demo_apbwe"], tmp_path)
    assert cfg.loss.terms.apbwe.loss == recipe.loss
    assert cfg.loss.terms.mrstft.weight == 100
    assert cfg.callbacks.best_checkpoint.monitor == "val/lsd"
    assert OmegaConf.masked_copy(cfg, ["model", "data", "trainer", "optimizer"]) == (
        OmegaConf.masked_copy(recipe, ["model", "data", "trainer", "optimizer"])
    )
    loss = build_module(cfg).objective.loss
    assert loss.losses["apbwe"].weights["waveform"] == 1000


def test_one_override_changes_the_whole_task(tmp_path):
    cfg = compose_train(["ratio=8", "sample_rate=48000"], tmp_path)
    assert cfg.model.ratio == 8 and cfg.data.ratio == 8 and cfg.data.sample_rate == 48000


def test_fast_dev_run_trains_and_tests(tmp_path, tiny_corpus):
    cfg = compose_train(
        [
            "data=folder",
            f"data.root={tiny_corpus}",
            "data.test_speakers=[spk2]",
            "data.patch_len=2048",
            "data.batch_size=2",
            "logger=none",
            "trainer=cpu",
            "+trainer.fast_dev_run=true",
            "model.filters=[8,16]",
            "model.kernels=[9,5]",
            "model.bottleneck_filters=16",
        ],
        tmp_path,
    )
    score = train(cfg)
    assert isinstance(score, float)
    metrics = Path(cfg.paths.output_dir) / "metrics.json"
    assert metrics.is_file()
