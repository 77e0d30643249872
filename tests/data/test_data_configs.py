"""The new data configs compose, and VCTK / piano / demo_piano instantiate through Hydra."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import open_dict

from audio_superres.data import DemoPianoCorpus, PianoCorpus, VCTKCorpus
from audio_superres.data.vctk import MULTI_HELD_OUT, SINGLE_HELD_OUT_UTTERANCES, utterance_number

from ..conftest import CONF_DIR
from .test_vctk import P225_NUMBERS, make_vctk


def compose_train(overrides: list[str], tmp_path: Path):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, "logger=none"])
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
        cfg.paths.data_dir = str(tmp_path / "data")
    return cfg


@pytest.mark.parametrize(
    ("data", "cls", "split"),
    [
        ("vctk_single", VCTKCorpus, "single"),
        ("vctk_multi", VCTKCorpus, "multi"),
        ("vctk_multi_standard", VCTKCorpus, "multi_standard"),
        ("piano", PianoCorpus, None),
        ("demo_piano", DemoPianoCorpus, None),
    ],
)
def test_configs_instantiate_without_touching_disk(tmp_path: Path, data, cls, split) -> None:
    cfg = compose_train([f"data={data}"], tmp_path)
    dm = instantiate(cfg.data)
    assert type(dm.corpus) is cls
    if split:
        assert dm.corpus.split_name == split and dm.corpus.mic == "mic1"
        assert dm.corpus.trim_silence is False and dm.corpus.strict is True
        assert dm.corpus.root == tmp_path / "data" / "VCTK"
    assert not (tmp_path / "data").exists()


def test_vctk_overrides_through_hydra(tmp_path: Path) -> None:
    root = make_vctk(tmp_path / "VCTK", "0.92", ["p225"], {"p225": P225_NUMBERS}, seconds=0.1)
    cfg = compose_train(
        [
            "data=vctk_single",
            f"data.root={root}",
            "data.corpus.mic=mic2",
            "data.corpus.release=0.92",
            "sample_rate=48000",
            "data.patch_len=1024",
            "data.prepare_workers=1",
        ],
        tmp_path,
    )
    dm = instantiate(cfg.data)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.corpus.name == "vctk0.92-mic2-single" and dm.sample_rate == 48000
    assert all(e.path.endswith("_mic2.flac") for e in dm.cache.entries)
    held = sorted(utterance_number(dm.cache.entries[i].path) for i in dm.test_indices)
    assert held == list(SINGLE_HELD_OUT_UTTERANCES)


def test_vctk_multi_through_hydra_holds_out_the_last_9(tmp_path: Path) -> None:
    root = make_vctk(tmp_path / "VCTK", "0.80", seconds=0.05)
    cfg = compose_train(
        ["data=vctk_multi", f"data.root={root}", "data.patch_len=512", "data.prepare_workers=2"],
        tmp_path,
    )
    dm = instantiate(cfg.data)
    dm.prepare_data()
    dm.setup("fit")
    test = {dm.cache.entries[i].speaker for i in dm.test_indices}
    train = {dm.cache.entries[i].speaker for i in dm.train_indices}
    assert sorted(test) == list(MULTI_HELD_OUT) and len(train) == 100 and not train & test
