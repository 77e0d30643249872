"""PESQ-WB and STOI against their reference implementations, and their place in the reports."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pesq
import pystoi
import pytest
import soundfile as sf
import torch
from omegaconf import OmegaConf
from torchmetrics.functional.audio import scale_invariant_signal_distortion_ratio

from audio_superres.dsp.cubic import CubicUpsample
from audio_superres.dsp.lowpass import crop_to_multiple, make_lowres
from audio_superres.dsp.resample import resample_audio
from audio_superres.errors import ConfigError
from audio_superres.metrics import (
    ALL_METRIC_KEYS,
    HIGHER_IS_BETTER,
    METRIC_KEYS,
    PERCEPTUAL_KEYS,
    compute_metrics,
    perceptual_metrics_many,
    pesq_wb,
    si_sdr,
    stoi,
)
from audio_superres.report.results import format_table, write_results
from audio_superres.report.sweep import SUMMARY_COLUMNS, read_job
from audio_superres.tasks.mismatch import FilterResult, mismatch_rows, write_mismatch_csv
from audio_superres.tasks.perceptual import PerceptualMetrics, perceptual_callbacks

from .conftest import REPO, voiced_signal
from .test_e2e import last_line, run, train_args


def speech_pair(sr: int = 16000, seconds: float = 2.0, seed: int = 0) -> tuple[np.ndarray, ...]:
    """(reference, degraded): a voiced signal and a low-passed, noisy copy of it."""
    rng = np.random.default_rng(seed)
    ref = voiced_signal(rng, seconds, sr).astype(np.float64)
    smooth = np.convolve(ref, np.ones(5) / 5, mode="same")
    deg = smooth + 0.01 * rng.standard_normal(len(ref))
    return ref, deg


# ---- each metric against its reference implementation, called directly ----------------------


def test_si_sdr_matches_torchmetrics_zero_mean() -> None:
    rng = np.random.default_rng(3)
    target = torch.from_numpy(np.stack([speech_pair(seed=s)[0][:8000] for s in range(3)]))
    pred = 0.6 * target + 0.05 * torch.from_numpy(rng.standard_normal(target.shape)) + 0.02
    expected = scale_invariant_signal_distortion_ratio(pred, target, zero_mean=True)
    torch.testing.assert_close(si_sdr(pred, target), expected, rtol=1e-10, atol=1e-10)
    # scale invariance: a gain on the prediction leaves SI-SDR unchanged (unlike SNR)
    torch.testing.assert_close(si_sdr(3.0 * pred, target), si_sdr(pred, target))
    values = compute_metrics(pred, target, 4)
    assert not torch.allclose(values["snr"], values["si_sdr"])


def test_pesq_and_stoi_equal_the_reference_packages() -> None:
    ref, deg = speech_pair()
    scores = perceptual_metrics_many({"deg": deg}, ref, 16000)["deg"]
    assert scores.problems == {}
    assert scores.values["pesq"] == pytest.approx(pesq.pesq(16000, ref, deg, "wb"), abs=1e-6)
    assert scores.values["stoi"] == pytest.approx(pystoi.stoi(ref, deg, 16000), abs=1e-9)
    # the batched functional forms give the same per-utterance values
    batch = torch.from_numpy(np.stack([deg, ref]))
    targets = torch.from_numpy(np.stack([ref, ref]))
    got = pesq_wb(batch, targets, 16000)
    assert got.shape == (2,)
    assert got[0].item() == pytest.approx(scores.values["pesq"], abs=1e-6)
    assert got[1].item() > got[0].item()  # the reference itself scores best
    assert stoi(batch[0], targets[0], 16000).item() == pytest.approx(scores.values["stoi"])


def test_other_rates_are_resampled_to_16k_with_the_project_resampler() -> None:
    ref, deg = speech_pair(sr=48000)
    scores = perceptual_metrics_many({"deg": deg}, ref, 48000)["deg"]
    ref16, deg16 = resample_audio(ref, 48000, 16000), resample_audio(deg, 48000, 16000)
    assert scores.values["pesq"] == pytest.approx(pesq.pesq(16000, ref16, deg16, "wb"), abs=1e-4)
    assert scores.values["stoi"] == pytest.approx(pystoi.stoi(ref16, deg16, 16000), abs=1e-6)
    # not what the metrics give at the original rate (STOI would resample on its own)
    assert scores.values["stoi"] != pytest.approx(pystoi.stoi(ref, deg, 48000), abs=1e-9)


@pytest.mark.parametrize(
    "case,ref,deg",
    [
        ("silence", np.zeros(32000), np.zeros(32000)),
        ("silent reference", np.zeros(32000), speech_pair()[1]),
        ("too short", speech_pair()[0][:3200], speech_pair()[1][:3200]),
    ],
)
def test_undefined_gives_nan_with_the_reason_not_a_crash(case, ref, deg) -> None:
    scores = perceptual_metrics_many({"deg": deg}, ref, 16000)["deg"]
    assert math.isnan(scores.values["pesq"]) and math.isnan(scores.values["stoi"])
    assert set(scores.problems) == {"pesq", "stoi"}
    with pytest.warns(RuntimeWarning, match="pesq undefined for utterance 0"):
        assert math.isnan(pesq_wb(torch.from_numpy(deg), torch.from_numpy(ref), 16000).item())
    if case == "too short":
        with pytest.raises(pesq.BufferTooShortError):  # what the reference does instead
            pesq.pesq(16000, ref, deg, "wb")
        assert "1/4 of a second" in scores.problems["pesq"]


# ---- the tables ---------------------------------------------------------------------------


def fake_summary(perceptual: bool) -> dict:
    keys = ALL_METRIC_KEYS if perceptual else METRIC_KEYS
    cubic = {k: 1.0 + i for i, k in enumerate(keys)}
    model = {k: v + (0.5 if k in HIGHER_IS_BETTER else -0.25) for k, v in cubic.items()}
    summary = {"model": model, "cubic": cubic, "n_files": 3}
    if perceptual:
        summary["perceptual"] = {
            "sample_rate": 16000,
            "resampled_from": 48000,
            "n_files_total": 3,
            "n_files": {w: {"pesq": 2, "stoi": 3} for w in ("model", "cubic")},
            "undefined": {"model": {"pesq": ["a.wav"]}, "cubic": {"pesq": ["a.wav"]}},
        }
    return summary


def test_console_table_metrics_json_and_mismatch_csv_have_the_new_keys(tmp_path: Path) -> None:
    summary = fake_summary(perceptual=True)
    table = format_table(summary)
    for label in ("SI-SDR (dB)", "LSD-LF", "PESQ-WB", "STOI"):
        assert label in table
    assert "resampled from 48000 Hz" in table and "PESQ-WB 2" in table
    gain_line = table.splitlines()[3].split()
    assert gain_line[0] == "gain" and all(float(g) > 0 for g in gain_line[1:])  # better = +
    meta = {"ratio": 4, "sample_rate": 48000}
    path = write_results(tmp_path, summary, [{"name": "a.wav", "pesq": math.nan}], [], meta)
    written = json.loads(path.read_text())
    assert set(written["model"]) == set(ALL_METRIC_KEYS)
    assert written["perceptual"]["resampled_from"] == 48000
    assert "PESQ" not in format_table(fake_summary(perceptual=False))

    results = [
        FilterResult(name, None, fake_summary(perceptual), [], [])
        for name, perceptual in (("none", True), ("chebyshev", True))
    ]
    write_mismatch_csv(tmp_path / "mismatch.csv", results)
    header = (tmp_path / "mismatch.csv").read_text().splitlines()[0].split(",")
    assert header == ["test_lowpass", "n_files"] + [
        f"{who}_{k}" for who in ("model", "cubic") for k in ALL_METRIC_KEYS
    ]
    # without PESQ/STOI in one filter's summary the columns are the always-computed ones
    results[1] = FilterResult("chebyshev", None, fake_summary(False), [], [])
    assert set(mismatch_rows(results)[0]) == {"test_lowpass", "n_files"} | {
        f"{who}_{k}" for who in ("model", "cubic") for k in METRIC_KEYS
    }


def test_sweep_summary_takes_every_metric(tmp_path: Path) -> None:
    job = tmp_path / "0"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("- seed=1\n")
    (job / "metrics.json").write_text(json.dumps({**fake_summary(True), "lowpass": "none"}))
    (row,) = read_job(job, tmp_path)
    for key in ALL_METRIC_KEYS:
        assert f"model_{key}" in SUMMARY_COLUMNS and f"cubic_{key}" in SUMMARY_COLUMNS
        assert row[f"model_{key}"] == fake_summary(True)["model"][key]


def test_config_switch() -> None:
    assert perceptual_callbacks(OmegaConf.create({"perceptual_metrics": False})) == []
    (cb,) = perceptual_callbacks(OmegaConf.create({"perceptual_metrics": True}))
    assert isinstance(cb, PerceptualMetrics) and cb.workers >= 1
    (cb,) = perceptual_callbacks({"perceptual_metrics": True, "perceptual_workers": 0})
    assert cb.workers == 0
    for bad in ({"perceptual_metrics": "yes"}, {"perceptual_metrics": True,
                                                 "perceptual_workers": -1}):  # fmt: skip
        with pytest.raises(ConfigError):
            perceptual_callbacks(bad)
    for name in ("evaluate", "train"):
        cfg = OmegaConf.load(REPO / "conf" / f"{name}.yaml")
        assert cfg.perceptual_metrics is (name == "evaluate")


# ---- evaluate.py end to end at 48 kHz --------------------------------------------------------


def test_evaluate_48k_corpus_scores_pesq_at_16k_and_survives_silence(tmp_path: Path) -> None:
    """A 48 kHz corpus: PESQ/STOI equal resampling to 16 kHz by hand then calling the reference
    packages; a silent and a too-short file get NaN with a warning naming them, not a crash."""
    sr, ratio = 48000, 4
    rng = np.random.default_rng(5)
    root = tmp_path / "corpus" / "spk"
    root.mkdir(parents=True)
    signals = {
        "speech0.wav": voiced_signal(rng, 1.5, sr),
        "speech1.wav": voiced_signal(rng, 1.2, sr),
        "silent.wav": np.zeros(sr, dtype=np.float32),
        "short.wav": voiced_signal(rng, 0.2, sr),
    }
    for name, x in signals.items():
        sf.write(root / name, x, sr, subtype="FLOAT")
    out = tmp_path / "eval"
    proc = run(
        [
            str(REPO / "evaluate.py"),
            "model=cubic",
            "data=folder",
            f"data.root={root.parent}",
            "data.test_speakers=*",
            f"data.cache_dir={tmp_path}/cache",
            f"ratio={ratio}",
            f"sample_rate={sr}",
            "perceptual_workers=1",
            f"hydra.run.dir={out}",
        ],
        cwd=tmp_path,
    )
    metrics = json.loads(Path(last_line(proc.stdout)).read_text())
    logs = proc.stdout + proc.stderr
    assert "resampled from 48000 Hz" in logs
    for name in ("silent.wav", "short.wav"):
        assert f"{name}: PESQ of the model output undefined" in logs
    info = metrics["perceptual"]
    assert (info["sample_rate"], info["resampled_from"], info["n_files_total"]) == (16000, sr, 4)
    assert info["n_files"]["cubic"] == {"pesq": 2, "stoi": 2}
    assert sorted(info["undefined"]["cubic"]["pesq"]) == ["spk/short.wav", "spk/silent.wav"]

    rows = {Path(r["name"]).name: r for r in csv.DictReader((out / "per_file.csv").open())}
    for key in ALL_METRIC_KEYS:
        assert key in rows["speech0.wav"] and f"cubic_{key}" in rows["speech0.wav"]
    assert rows["silent.wav"]["cubic_pesq"] == "nan"
    by_hand = {}
    cubic = CubicUpsample(ratio)
    for name in ("speech0.wav", "speech1.wav"):
        hr = crop_to_multiple(torch.from_numpy(sf.read(root / name, dtype="float32")[0]), ratio)
        pred = cubic(make_lowres(hr[None], ratio, "chebyshev"))[0].numpy()
        ref16 = resample_audio(hr.numpy(), sr, 16000)
        pred16 = resample_audio(pred, sr, 16000)
        by_hand[name] = pesq.pesq(16000, ref16, pred16, "wb")
        assert float(rows[name]["cubic_pesq"]) == pytest.approx(by_hand[name], abs=2e-3)
        assert float(rows[name]["cubic_stoi"]) == pytest.approx(
            pystoi.stoi(ref16, pred16, 16000), abs=1e-3
        )
    assert metrics["cubic"]["pesq"] == pytest.approx(np.mean(list(by_hand.values())), abs=2e-3)
    assert set(metrics["model"]) == set(ALL_METRIC_KEYS)
    assert "PESQ-WB" in (out / "report" / "index.html").read_text()
    for key in PERCEPTUAL_KEYS:
        assert math.isfinite(metrics["model"][key])


def test_train_final_test_with_perceptual_metrics_under_two_filters(tiny_corpus, tmp_path):
    """train.py perceptual_metrics=true: PESQ/STOI in metrics.json, by_lowpass and mismatch.csv."""
    run_dir = tmp_path / "train"
    args = train_args(tiny_corpus, run_dir) + [
        "perceptual_metrics=true",
        "perceptual_workers=0",
        "test_lowpass=[none,chebyshev]",
    ]
    proc = run(args, cwd=tmp_path)
    assert "PESQ-WB" in proc.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["model"]) == set(ALL_METRIC_KEYS)
    for name in ("none", "chebyshev"):
        assert metrics["by_lowpass"][name]["perceptual"]["n_files"]["model"]["pesq"] == 2
    rows = list(csv.DictReader((run_dir / "mismatch.csv").open()))
    assert [r["test_lowpass"] for r in rows] == ["none", "chebyshev"]
    assert {f"model_{k}" for k in ALL_METRIC_KEYS} <= set(rows[0])
    # the same input files under another filter give other perceptual scores
    assert rows[0]["cubic_pesq"] != rows[1]["cubic_pesq"]
