"""`evaluate.py model=cubic data=folder data.root=DIR` without sample_rate: the rate comes from
the held-out files when they agree, and a disagreement is one line naming the rates."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from audio_superres.errors import DataError
from audio_superres.tasks.evaluate import build_for_evaluation

from .conftest import CONF_DIR, REPO, write_corpus
from .test_e2e import run


def compose_evaluate(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("evaluate", overrides=overrides)


def cubic_on(root: Path, *extra: str) -> list[str]:
    return ["model=cubic", "data=folder", f"data.root={root}", "data.test_speakers='*'",
            "ratio=2", *extra]


def test_sample_rate_is_taken_from_files_that_agree(tmp_path: Path, caplog) -> None:
    root = write_corpus(tmp_path / "c", speakers=2, files=1, seconds=0.5, sr=22050)
    cfg = compose_evaluate(cubic_on(root))
    with caplog.at_level("INFO", logger="audio_superres.tasks.evaluate"):
        module, data_cfg, _ = build_for_evaluation(cfg)
    assert module.sample_rate == 22050 and data_cfg["sample_rate"] == 22050
    assert "sample_rate=22050: the rate of all 2 held-out files" in caplog.text
    # only the held-out files count: a training speaker at another rate does not matter
    write_corpus(tmp_path / "c2", speakers=1, files=1, seconds=0.5, sr=8000)
    (tmp_path / "c2" / "spk0").rename(root / "other")
    cfg = compose_evaluate(cubic_on(root)[:-2] + ["data.test_speakers=[spk0,spk1]", "ratio=2"])
    assert build_for_evaluation(cfg)[0].sample_rate == 22050


def test_an_explicit_sample_rate_wins(tmp_path: Path) -> None:
    root = write_corpus(tmp_path / "c", speakers=1, files=1, seconds=0.5, sr=22050)
    module, _, _ = build_for_evaluation(compose_evaluate(cubic_on(root, "sample_rate=16000")))
    assert module.sample_rate == 16000


def test_disagreeing_rates_are_named(tmp_path: Path) -> None:
    root = write_corpus(tmp_path / "c", speakers=2, files=1, seconds=0.5, sr=16000)
    write_corpus(tmp_path / "d", speakers=1, files=2, seconds=0.5, sr=8000)
    (tmp_path / "d" / "spk0").rename(root / "low")
    with pytest.raises(DataError) as err:
        build_for_evaluation(compose_evaluate(cubic_on(root)))
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{root}: ")
    assert "8000 Hz: 2 files" in message and "16000 Hz: 2 files" in message
    assert "sample_rate=" in message


@pytest.mark.slow
def test_evaluate_cubic_on_a_folder_without_sample_rate(tmp_path: Path) -> None:
    root = write_corpus(tmp_path / "c", speakers=1, files=1, seconds=1.0, sr=22050)
    proc = run([str(REPO / "evaluate.py"), *cubic_on(root), f"hydra.run.dir={tmp_path / 'ev'}",
                f"data.cache_dir={tmp_path / 'cache'}", "device=cpu"], cwd=tmp_path)
    assert (tmp_path / "ev" / "metrics.json").is_file()
    assert "sample_rate=22050" in proc.stdout + proc.stderr
