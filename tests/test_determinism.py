"""Determinism: the same seed on the same machine gives the same validation metrics on CPU, and
every run records its seed and library versions."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from audio_superres.runs import library_versions
from audio_superres.tasks.train import train

from .test_configs import compose_train


def _run(
    tmp_path: Path, corpus: Path, name: str, seed: int, test: bool = True
) -> tuple[float, dict, Path]:
    cfg = compose_train(
        [
            "data=folder",
            f"data.root={corpus}",
            "data.test_speakers=[spk2]",
            "data.patch_len=1024",
            "data.batch_size=2",
            f"data.cache_dir={tmp_path}/cache",
            "trainer=cpu",
            "trainer.max_steps=3",
            "trainer.val_check_interval=3",
            "trainer.enable_progress_bar=false",
            "trainer.num_sanity_val_steps=0",
            f"test_after_fit={test}",
            "logger=csv",
            "lowpass=none",
            "model.filters=[8,16]",
            "model.kernels=[9,5]",
            "model.bottleneck_filters=16",
            f"seed={seed}",
        ],
        tmp_path / name,
    )
    best_val_snr = train(cfg)
    out = Path(cfg.paths.output_dir)
    metrics = json.loads((out / "metrics.json").read_text()) if test else {}
    return best_val_snr, metrics, out


def test_same_seed_same_metrics_and_the_seed_is_recorded(tmp_path: Path, tiny_corpus: Path):
    snr_a, metrics_a, out_a = _run(tmp_path, tiny_corpus, "a", seed=11)
    snr_b, metrics_b, _ = _run(tmp_path, tiny_corpus, "b", seed=11)
    assert snr_a == snr_b  # exactly: same seed, same machine, CPU
    assert metrics_a["model"] == metrics_b["model"]
    snr_c, _, _ = _run(tmp_path, tiny_corpus, "c", seed=12, test=False)
    assert snr_c != snr_a  # the seed is what made them equal

    versions = library_versions()
    assert {"torch", "lightning", "numpy", "audio_superres", "python"} <= set(versions)
    assert metrics_a["seed"] == 11 and metrics_a["versions"] == versions
    hparams = yaml.safe_load((out_a / "csv" / "hparams.yaml").read_text())
    assert hparams["seed"] == 11 and hparams["versions"] == versions
    assert hparams["config"]["seed"] == 11
