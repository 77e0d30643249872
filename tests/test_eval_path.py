"""train.py and evaluate.py score through the one chunked inference path, and loggers keep
every test filter (per-filter keys, media through the MediaLogger callback, the learning rate)."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, OmegaConf, open_dict

from audio_superres import inference
from audio_superres.checkpoint import instantiate_trusted
from audio_superres.settings import inference_settings
from audio_superres.tasks.evaluate import evaluate
from audio_superres.tasks.train import train

from .conftest import CONF_DIR
from .test_configs import compose_train

CHUNK, OVERLAP = 512, 128  # LR samples: a 1.5 s clip at 4 kHz LR spans about 16 chunks

# Tiny sizes per model class, so every config of conf/model/ trains in seconds. A model class
# not listed here runs at its config's size (add it here to keep the test fast).
TINY = {
    "AudioUNet": ["model.filters=[8,16]", "model.kernels=[9,5]", "model.bottleneck_filters=16"],
    "TFiLMUNet": ["model.filters=[8,16]", "model.kernels=[9,5]", "model.bottleneck_filters=16"],
    "DNNBaseline": ["model.patch_len=256", "model.hidden_sizes=[32,32]"],
    "APBWE": ["model.channels=16", "model.layers=1"],
}


def trainable_model_configs() -> list[str]:
    """Every conf/model/ entry with parameters (a parameter-free one, like cubic, is not
    trained: evaluate.py model=cubic scores it)."""
    names = []
    for path in sorted((CONF_DIR / "model").glob("*.yaml")):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("train", overrides=[f"model={path.stem}", *tiny_overrides(path.stem)])
        model = instantiate_trusted(OmegaConf.to_container(cfg.model, resolve=True))
        if any(True for _ in model.parameters()):
            names.append(path.stem)
    GlobalHydra.instance().clear()
    return names


def tiny_overrides(model: str) -> list[str]:
    target = str(OmegaConf.load(CONF_DIR / "model" / f"{model}.yaml")["_target_"])
    return TINY.get(target.rsplit(".", 1)[-1], [])


def train_cfg(corpus: Path, tmp_path: Path, model: str, extra: list[str]) -> DictConfig:
    return compose_train(
        [
            "data=folder",
            f"data.root={corpus}",
            "data.test_speakers=[spk2]",
            "data.patch_len=2048",
            "data.batch_size=2",
            f"data.cache_dir={tmp_path}/cache",
            "trainer=cpu",
            "trainer.max_steps=2",
            "trainer.val_check_interval=2",
            "trainer.enable_progress_bar=false",
            f"model={model}",
            *tiny_overrides(model),
            f"inference.chunk={CHUNK}",
            f"inference.overlap={OVERLAP}",
            "ratio=4",
            "sample_rate=16000",
            "seed=3",
            *extra,
        ],
        tmp_path,
    )


def eval_cfg(overrides: list[str], out: Path) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("evaluate", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    return cfg


def test_inference_node_is_shared_and_defaults_to_the_module_constants(tmp_path):
    expected = inference.InferenceSettings(
        inference.DEFAULT_CHUNK, inference.DEFAULT_OVERLAP, inference.DEFAULT_BATCH_SIZE
    )
    assert inference.InferenceSettings() == expected
    assert expected.precision == "32"
    for task in ("train", "evaluate", "upsample"):
        GlobalHydra.instance().clear()
        over = ["ckpt_path=x", "input=x", "output=x"] if task == "upsample" else []
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(task, overrides=over)
        # the scripts default to precision=auto; the library (and old callers) to float32
        assert inference_settings(cfg) == replace(expected, precision="auto"), task
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(task, overrides=[*over, "inference.chunk=2048"])
        assert inference_settings(cfg).chunk == 2048


def test_a_bad_inference_setting_is_one_config_error():
    from audio_superres.errors import ConfigError

    cfg = OmegaConf.create(
        {"inference": {"_target_": "audio_superres.inference.InferenceSettings", "overlap": -1}}
    )
    with pytest.raises(ConfigError, match="inference"):
        inference_settings(cfg)


@pytest.mark.parametrize("model", trainable_model_configs())
def test_train_and_evaluate_give_the_same_metrics(model, tiny_corpus, tmp_path):
    """The final test of train.py and evaluate.py on its checkpoint: the same numbers, to the
    last digit, on clips many chunks long (validation/test chunk like evaluate.py)."""
    clip = next((tiny_corpus / "spk2").glob("*.wav"))
    assert sf.info(clip).frames // 4 > 4 * CHUNK  # the test files span several chunks
    cfg = train_cfg(tiny_corpus, tmp_path, model, ["logger=none"])
    train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    trained = json.loads((run_dir / "metrics.json").read_text())

    out = tmp_path / "eval"
    evaluate(
        eval_cfg(
            [
                f"ckpt_path={trained['checkpoint']}",
                f"inference.chunk={CHUNK}",
                f"inference.overlap={OVERLAP}",
                "device=cpu",
                "perceptual_metrics=false",  # train.py's final test computes none by default
            ],
            out,
        )
    )
    evaluated = json.loads((out / "metrics.json").read_text())
    assert evaluated["n_files"] == trained["n_files"] == 2
    assert evaluated["model"] == trained["model"]
    assert evaluated["cubic"] == trained["cubic"]


def test_train_logs_every_test_filter_and_the_learning_rate(tiny_corpus, tmp_path):
    cfg = train_cfg(
        tiny_corpus,
        tmp_path,
        "audiounet_small",
        ["logger=csv", "test_lowpass=[none,chebyshev]", "trainer.log_every_n_steps=1"],
    )
    train(cfg)
    rows = list(csv.DictReader((Path(cfg.paths.output_dir) / "csv" / "metrics.csv").open()))
    columns = set(rows[0])
    for name in ("none", "chebyshev"):
        for key in ("snr", "lsd", "lsd_hf", "cubic/snr", "snr_gain"):
            assert f"test/{name}/{key}" in columns, (name, key)
    assert "test/snr" not in columns
    lrs = [float(r["lr-Adam"]) for r in rows if r.get("lr-Adam")]
    assert len(lrs) == 2 and lrs == pytest.approx([3e-4, 3e-4])
    # the two filters' numbers differ (each filter kept its own keys)
    final = {k: v for r in rows for k, v in r.items() if v}
    assert final["test/none/cubic/snr"] != final["test/chebyshev/cubic/snr"]


class RecordingWandbLogger(WandbLogger):
    """A W&B logger that records what it is given instead of starting a run."""

    last: RecordingWandbLogger | None = None

    def __init__(self, save_dir: str) -> None:
        # Lightning still opens an offline run on first use of `.experiment`: into save_dir, not ./
        super().__init__(offline=True, save_dir=save_dir)
        self.metrics: dict[str, Any] = {}
        self.tables: dict[str, Any] = {}
        RecordingWandbLogger.last = self

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        self.metrics.update(metrics)

    def log_table(self, key: str, columns: Any = None, data: Any = None, **kw: Any) -> None:
        self.tables[key] = (columns, data)

    def finalize(self, status: str) -> None:
        pass


def test_media_and_tables_carry_the_test_filter(tiny_corpus, tmp_path):
    """evaluate.py test_lowpass=[...] with a W&B logger: the MediaLogger callback's audio,
    spectrograms and per-file table, and the metrics, are keyed by filter."""
    evaluate(
        eval_cfg(
            [
                "model=cubic",
                "data=folder",
                f"data.root={tiny_corpus}",
                "data.test_speakers=[spk2]",
                f"data.cache_dir={tmp_path}/cache",
                "ratio=4",
                "sample_rate=16000",
                "test_lowpass=[none,chebyshev]",
                "n_examples=1",
                f"+logger.recording._target_={__name__}.RecordingWandbLogger",
                f"+logger.recording.save_dir={tmp_path}",
            ],
            tmp_path / "eval",
        )
    )
    logger = RecordingWandbLogger.last
    assert logger is not None
    for name in ("none", "chebyshev"):
        for key in ("snr", "lsd", "cubic/lsd_hf"):
            assert f"test/{name}/{key}" in logger.metrics
        for signal in ("HR", "LR", "cubic", "SR"):
            assert f"test/{name}/audio_0/{signal}" in logger.metrics
        assert f"test/{name}/spectrogram_0" in logger.metrics
        assert f"test/{name}/audio_1/HR" not in logger.metrics  # n_examples=1
        columns, data = logger.tables[f"test/{name}/per_file"]
        assert len(data) == 2 and "snr" in columns
    unfiltered = ("test/snr", "test/audio", "test/spectrogram")
    assert not any(k.startswith(unfiltered) for k in logger.metrics)
    assert set(logger.tables) == {"test/none/per_file", "test/chebyshev/per_file"}


def test_split_val_scores_the_validation_files_never_a_test_file(tiny_corpus, tmp_path):
    """evaluate.py split=val (choosing between models without test files): the validation
    utterances of the training speakers, as train.py's validation takes them."""
    common = [
        "model=cubic", "ratio=4", "sample_rate=16000", "data=folder", f"data.root={tiny_corpus}",
        "data.test_speakers=[spk2]", "data.val_max_files=2", f"data.cache_dir={tmp_path}/cache",
        "device=cpu", "perceptual_metrics=false",
    ]  # fmt: skip
    scored = {}
    for split in ("test", "val"):
        out = tmp_path / split
        evaluate(eval_cfg([*common, f"split={split}"], out))
        metrics = json.loads((out / "metrics.json").read_text())
        with open(out / "per_file.csv") as f:
            scored[split] = {row["name"] for row in csv.DictReader(f)}
        assert metrics["n_files"] == len(scored[split]) >= 1 and metrics["split"] == split
    assert all("spk2" in f for f in scored["test"])
    assert not any("spk2" in f for f in scored["val"])
    out = tmp_path / "grid"
    evaluate(eval_cfg([*common, "split=val", "degradations=robustness"], out))
    summary = (out / "summary.md").read_text()
    assert "validation files of" in summary and "never a test file" in summary
    with open(out / "per_file.csv") as f:
        assert {row["name"] for row in csv.DictReader(f)} == scored["val"]

    from audio_superres.errors import ConfigError

    with pytest.raises(ConfigError, match="split must be one of test, val"):
        evaluate(eval_cfg([*common, "split=train"], tmp_path / "bad"))
