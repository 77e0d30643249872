"""What a person sees while training: the bar counts steps of the step budget."""

from __future__ import annotations

import re

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger

from audio_superres.report.progress import StepProgressBar, train_description


class Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = (self.w * batch).pow(2).mean()
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def fit_and_capture(capsys: pytest.CaptureFixture[str], tmp_path, **trainer_kw) -> str:
    """The console text of a fit over 4 batches per epoch, with the project's bar."""
    data = torch.utils.data.DataLoader(torch.randn(8, 16), batch_size=2)  # 4 batches an epoch
    trainer = L.Trainer(
        callbacks=[StepProgressBar()], logger=CSVLogger(tmp_path), enable_checkpointing=False,
        enable_model_summary=False, accelerator="cpu", limit_val_batches=0, **trainer_kw,
    )
    trainer.fit(Tiny(), train_dataloaders=data)
    out = capsys.readouterr()
    return (out.out + out.err).replace("\r", "\n")


def test_a_step_budget_shows_steps_of_the_budget(capsys, tmp_path) -> None:
    text = fit_and_capture(capsys, tmp_path, max_steps=10, max_epochs=-1)  # 2.5 epochs
    lines = [ln for ln in text.splitlines() if ln.startswith("Steps")]
    assert lines, text
    counts = [tuple(map(int, m.groups())) for ln in lines
              if (m := re.search(r"\| (\d+)/(\d+) ", ln))]
    assert counts[-1] == (10, 10)
    assert {total for _, total in counts} == {10}  # one bar for the budget, across epochs
    assert [n for n, _ in counts] == sorted(n for n, _ in counts)  # never restarts at an epoch
    assert "step/s" in lines[-1] and "train/loss" in lines[-1]
    assert "Epoch" not in text and "/-" not in text
    assert "v_num" not in text  # the logger's version is no figure of the run


def test_an_epoch_budget_shows_epochs_counted_from_one(capsys, tmp_path) -> None:
    text = fit_and_capture(capsys, tmp_path, max_steps=-1, max_epochs=2)
    assert re.search(r"^Epoch 1/2: .*\| 4/4 ", text, re.M), text
    assert re.search(r"^Epoch 2/2: .*\| 4/4 ", text, re.M), text
    assert "Epoch 0" not in text and "Steps" not in text


def test_description_without_any_budget() -> None:
    trainer = L.Trainer(max_steps=-1, max_epochs=-1, max_time="00:00:01:00", logger=False,
                        enable_checkpointing=False, enable_model_summary=False)
    assert train_description(trainer) == "Epoch 1"


def test_train_py_drops_the_bar_when_progress_bars_are_off(tmp_path) -> None:
    """`trainer.enable_progress_bar=false` with the callbacks group's bar: no Lightning error."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    from audio_superres.tasks.train import (
        apply_precision,
        drop_progress_bar_if_disabled,
        instantiate_group,
    )

    from .test_documented_settings import compose_train

    cfg = compose_train(["trainer.enable_progress_bar=false", f"paths.output_dir={tmp_path}"])
    apply_precision(cfg)
    callbacks = instantiate_group(cfg.callbacks)
    assert any(isinstance(c, StepProgressBar) for c in callbacks)
    with pytest.raises(InstantiationException, match="enable_progress_bar=False"):
        instantiate(cfg.trainer, callbacks=callbacks, logger=False)
    kept = drop_progress_bar_if_disabled(callbacks, cfg.trainer)
    assert not any(isinstance(c, StepProgressBar) for c in kept) and len(kept) == len(callbacks) - 1
    instantiate(cfg.trainer, callbacks=kept, logger=False)
    cfg = compose_train([f"paths.output_dir={tmp_path}"])
    apply_precision(cfg)
    trainer = instantiate(cfg.trainer, callbacks=instantiate_group(cfg.callbacks), logger=False)
    assert isinstance(trainer.progress_bar_callback, StepProgressBar)


def test_wandb_offline_run_starts_without_a_deprecation_warning(tmp_path, capfd, monkeypatch):
    """Every training run printed wandb's `The anonymous setting has no effect` warning."""
    from audio_superres.wandb_setup import make_wandb_logger

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "false")
    logger = make_wandb_logger(save_dir=str(tmp_path), project="test")
    try:
        logger.experiment.log({"x": 1.0})
    finally:
        logger.experiment.finish()
    out = capfd.readouterr()
    assert "offline" in (out.out + out.err).lower()  # wandb did speak: the check can see it
    assert "anonymous" not in (out.out + out.err).lower()


def test_train_and_evaluate_console(tiny_corpus, tmp_path, capsys, caplog) -> None:
    """`train.py` shows the step bar of the callbacks group and logs the splits' sizes;
    train.py's final test and evaluate.py print the project's table once, not Lightning's
    'Test metric' table first."""
    import logging

    caplog.set_level(logging.INFO, logger="audio_superres")
    from audio_superres.tasks.evaluate import evaluate
    from audio_superres.tasks.train import train

    from .test_documented_settings import compose_train
    from .test_eval_path import eval_cfg

    cfg = compose_train([
        "data=folder", f"data.root={tiny_corpus}", "data.test_speakers=[spk2]",
        "data.patch_len=2048", "data.batch_size=2", f"data.cache_dir={tmp_path}/cache",
        "trainer=cpu", "trainer.max_steps=3", "trainer.val_check_interval=3", "logger=none",
        "model_width=4", "model_depth=2", f"paths.output_dir={tmp_path}/run",
    ])
    train(cfg)
    out = capsys.readouterr().out.replace("\r", "\n")
    assert re.search(r"^Steps: 100%.*\| 3/3 ", out, re.M), out
    assert "Test metric" not in out and "test/snr" not in out
    assert "model " in out and "cubic " in out  # the project's table
    assert re.search(r"train: \d+ files, [\d.]+ min, 2 speakers \(spk0, spk1\)", caplog.text)
    assert re.search(r"test: 2 files, [\d.]+ min, 1 speaker \(spk2\)", caplog.text)
    evaluate(eval_cfg([f"ckpt_path={tmp_path}/run/checkpoints/best.ckpt", "device=cpu",
                       "perceptual_metrics=false"], tmp_path / "eval"))
    out = capsys.readouterr().out.replace("\r", "\n")
    assert "Test metric" not in out and "test/snr" not in out
    assert re.search(r"^Testing DataLoader 0: 100%.*\| 2/2 ", out, re.M), out  # train's bars
    assert out.rstrip().endswith("metrics.json")


def test_a_warmup_longer_than_the_step_budget_is_one_line(tiny_corpus, tmp_path) -> None:
    """`python train.py experiment=demo trainer.max_steps=6` (warm-up 20): one line naming the
    settings, not a ValueError traceback from inside Lightning's fit."""
    from audio_superres.errors import ConfigError, UserFacingError
    from audio_superres.schedules import WarmupCosineLR

    opt = torch.optim.SGD([torch.nn.Parameter(torch.ones(()))], lr=0.1)
    with pytest.raises(ConfigError, match="lower scheduler.warmup_steps or raise trainer"):
        WarmupCosineLR(opt, warmup_steps=20, total_steps=6)
    assert issubclass(ConfigError, UserFacingError) and issubclass(ConfigError, ValueError)
    from .conftest import REPO
    from .test_e2e import run

    proc = run([str(REPO / "train.py"), "experiment=demo", "data=folder",
                f"data.root={tiny_corpus}", "data.test_speakers=[spk2]", "data.patch_len=2048",
                "data.batch_size=2", f"data.cache_dir={tmp_path / 'cache'}", "model_width=4",
                "model_depth=2", "trainer.max_steps=6", "logger=none",
                f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path,
               env={"HYDRA_FULL_ERROR": "0"}, succeed=False)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: scheduler: need 0 <= warmup_steps < total_steps"), proc.stderr
    assert "Traceback" not in proc.stderr
