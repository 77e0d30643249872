"""Settings the docs promise do what they say: debug=overfit repeats one batch, model_width /
model_depth size apbwe_small, data.corpus.on_bad_file=skip works for every data config."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from audio_superres.checkpoint import instantiate_trusted
from audio_superres.data.samplers import PatchBatchSampler
from audio_superres.tasks.train import apply_precision

from .conftest import CONF_DIR, write_corpus


def compose_train(overrides: list[str]) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=overrides)


class RecordBatches(L.LightningModule):
    """The smallest module: one parameter, and a copy of every training batch it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))
        self.seen: list[torch.Tensor] = []

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        self.seen.append(batch.detach().clone())
        return (self.w * batch).pow(2).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)


def batches_lightning_trains_on(debug: str, tmp_path: Path) -> list[torch.Tensor]:
    """The training batches of 4 steps of `python train.py debug=<debug>` on a tiny corpus."""
    corpus = write_corpus(tmp_path / "corpus", speakers=3, files=2, seconds=1.0)
    cfg = compose_train([
        f"debug={debug}", "data=folder", f"data.root={corpus}", "data.test_speakers=[spk2]",
        "data.patch_len=1024", "data.batch_size=2", "data.patches_per_epoch=64",
        f"data.cache_dir={tmp_path / 'cache'}", "data.prepare_workers=1",
        f"paths.output_dir={tmp_path / 'run'}",
        "trainer.max_steps=4", "+trainer.enable_checkpointing=false",
        "trainer.enable_progress_bar=false", "+trainer.enable_model_summary=false",
    ])
    L.seed_everything(0, verbose=False)
    datamodule = instantiate(cfg.data)
    apply_precision(cfg)  # as train.py: the top-level precision -> Lightning's
    trainer = instantiate(cfg.trainer, logger=False)
    module = RecordBatches()
    trainer.fit(module, datamodule=datamodule)
    assert len(module.seen) == 4
    return module.seen


def test_debug_overfit_trains_on_one_batch_every_step(tmp_path: Path) -> None:
    """docs/training.md: `debug=overfit` is the first batch, every step (the loss must fall)."""
    seen = batches_lightning_trains_on("overfit", tmp_path / "overfit")
    for batch in seen[1:]:
        torch.testing.assert_close(batch, seen[0], rtol=0, atol=0)
    # without it every step draws new patches
    seen = batches_lightning_trains_on("default", tmp_path / "default")
    for a, b in zip(seen, seen[1:], strict=False):
        assert not torch.equal(a, b)


def test_sampler_repeats_its_first_batches() -> None:
    sampler = PatchBatchSampler(1000, 64, 4, seed=3, repeat_batches=2)
    first_epoch = list(sampler)
    assert first_epoch[0] != first_epoch[1]
    assert first_epoch[2::2] == [first_epoch[0]] * 7 and first_epoch[3::2] == [first_epoch[1]] * 7
    assert list(sampler) == first_epoch  # and in the next epoch
    plain = PatchBatchSampler(1000, 64, 4, seed=3)
    assert list(plain)[0] == first_epoch[0] and list(plain) != list(plain)
    with pytest.raises(ValueError, match="repeat_batches"):
        PatchBatchSampler(1000, 64, 4, seed=3, repeat_batches=-1)


def n_parameters(cfg: DictConfig) -> int:
    net = instantiate_trusted(OmegaConf.to_container(cfg.model, resolve=True), "model")
    return sum(p.numel() for p in net.parameters())


def sweep_points(cfg: DictConfig) -> list[list[str]]:
    """The jobs of a basic-sweeper grid (`hydra.sweeper.params`) as override lists."""
    axes = [[f"{k}={v.strip()}" for v in str(values).split(",")]
            for k, values in cfg.hydra.sweeper.params.items()]
    points: list[list[str]] = [[]]
    for axis in axes:
        points = [p + [v] for p in points for v in axis]
    return points


def test_model_width_and_depth_size_apbwe_small() -> None:
    """docs/training.md: model_width/model_depth size every CPU-size model, AP-BWE included."""
    default = compose_train(["experiment=demo_apbwe"])
    assert (default.model.channels, default.model.layers) == (128, 4)  # the config's own
    cfg = compose_train(["experiment=demo_apbwe", "model_width=16", "model_depth=2"])
    assert (cfg.model.channels, cfg.model.layers) == (16, 2)
    net = instantiate_trusted(OmegaConf.to_container(cfg.model, resolve=True), "model")
    assert (net.channels, net.layers) == (16, 2)
    assert net(torch.randn(1, 400)).shape == (1, 1600)
    assert n_parameters(cfg) < n_parameters(default)


def test_depth_sweep_trains_a_different_model_at_every_point() -> None:
    """`python train.py -m sweep=depth experiment=demo_apbwe`: no two jobs build the same model."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        sweep = compose("train", overrides=["sweep=depth", "experiment=demo_apbwe"],
                        return_hydra_config=True)
    points = sweep_points(sweep)
    assert len(points) == 6
    sizes = {n_parameters(compose_train(["experiment=demo_apbwe", *p])) for p in points}
    assert len(sizes) == len(points)


DATA_CONFIGS = sorted(p.stem for p in (CONF_DIR / "data").glob("*.yaml"))


@pytest.mark.parametrize("data", DATA_CONFIGS)
def test_on_bad_file_skip_is_one_override_for_every_data_config(data: str, tmp_path: Path) -> None:
    """docs/data.md, docs/reliability.md: `data.corpus.on_bad_file=skip`, as written, no `+`."""
    cfg = compose_train([f"data={data}", f"data.root={tmp_path}", "data.corpus.on_bad_file=skip"])
    assert cfg.data.corpus.on_bad_file == "skip"
    corpus = instantiate(cfg.data.corpus)(root=str(tmp_path), test_speakers=[])
    assert corpus.on_bad_file == "skip"
    default = compose_train([f"data={data}", f"data.root={tmp_path}"])
    assert instantiate(default.data.corpus)(root=str(tmp_path)).on_bad_file == "error"
