"""Bad input: every case ends in one clear line naming the file and the problem (or, where the
input is usable, in finite numbers), never in a traceback through the internals."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

from audio_superres.checkpoint import CheckpointError, load_checkpoint
from audio_superres.data.audio_io import AudioFileError, read_audio
from audio_superres.data.cache import build_cache
from audio_superres.data.corpora import FolderCorpus
from audio_superres.data.datamodule import SuperResDataModule
from audio_superres.data.vctk import VCTKCorpus
from audio_superres.errors import ConfigError, UserFacingError, run_task
from audio_superres.metrics import METRIC_KEYS
from audio_superres.module import SuperResolutionModule
from audio_superres.tasks.evaluate import build_for_evaluation, evaluate
from audio_superres.tasks.train import train

from .conftest import CONF_DIR, REPO, voiced_signal, write_corpus
from .test_configs import compose_train

SR = 16000
TINY_OVERRIDES = ["model.filters=[8,16]", "model.kernels=[9,5]", "model.bottleneck_filters=16"]
TINY_MODEL = {
    "_target_": "audio_superres.models.AudioUNet",
    "ratio": 4,
    "filters": [8, 16],
    "kernels": [9, 5],
    "bottleneck_filters": 16,
}


def _tone(seconds: float = 0.5, sr: int = SR, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * 440 * t)
    return np.stack([x * (c + 1) / channels for c in range(channels)], axis=1)


def _one_line(exc: BaseException, path: Path) -> str:
    message = str(exc)
    assert "\n" not in message, message
    assert str(path) in message, message
    return message


# --------------------------------------------------------------------------------------------
# files that cannot be used


def _write_bad(kind: str, path: Path) -> None:
    if kind == "corrupt":
        path.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + os.urandom(64))
    elif kind in ("truncated wav", "truncated flac"):
        sf.write(path, _tone(1.0), SR, subtype="PCM_16")
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "not audio":
        path.write_text("speaker,text\np225,Please call Stella.\n")
    elif kind == "no frames":
        sf.write(path, np.zeros((0, 1), np.float32), SR, subtype="FLOAT")
    elif kind in ("nan", "inf"):
        x = _tone(0.2).astype(np.float32)
        x[100] = np.nan if kind == "nan" else np.inf
        sf.write(path, x, SR, subtype="FLOAT")


BAD = {
    "corrupt": ("x.wav", "cannot decode"),
    "truncated wav": ("x.wav", "truncated"),
    "truncated flac": ("x.flac", "cannot decode"),
    "empty": ("x.wav", "cannot decode"),
    "not audio": ("x.flac", "cannot decode"),
    "no frames": ("x.wav", "no audio frames"),
    "nan": ("x.wav", "non-finite"),
    "inf": ("x.wav", "non-finite"),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_unusable_file_is_named_with_its_problem(tmp_path: Path, kind: str) -> None:
    name, problem = BAD[kind]
    path = tmp_path / name
    _write_bad(kind, path)
    with pytest.raises(AudioFileError) as info:
        read_audio(path)
    assert problem in _one_line(info.value, path)
    assert isinstance(info.value, UserFacingError)


def test_preparation_skips_or_stops_and_lists_every_bad_file(tmp_path: Path) -> None:
    root = write_corpus(tmp_path / "corpus", speakers=2, files=1, seconds=0.3)
    bad = {}
    for kind in ("corrupt", "truncated wav", "empty", "nan"):
        path = root / "spk0" / f"bad_{kind.replace(' ', '_')}.wav"
        _write_bad(kind, path)
        bad[path.name] = BAD[kind][1]
    with pytest.raises(AudioFileError, match="spk0/bad_"):
        build_cache(FolderCorpus(root), SR, tmp_path / "cache", num_workers=1, progress=False)
    corpus = FolderCorpus(root, on_bad_file="skip")
    with pytest.warns(UserWarning, match="4 unreadable file"):
        cached = build_cache(corpus, SR, tmp_path / "cache", num_workers=1, progress=False)
    assert len(cached) == 2
    report = json.loads((cached.path / "report.json").read_text())
    listed = {Path(s["path"]).name: s["reason"] for s in report["skipped"]}
    assert set(listed) == set(bad)
    for name, problem in bad.items():
        assert name in listed[name] and problem in listed[name]


# --------------------------------------------------------------------------------------------
# files that are usable: any channel count, rate and sample format


def test_formats_channels_and_rates_are_decoded_to_mono_at_the_corpus_rate(tmp_path) -> None:
    root = tmp_path / "corpus" / "spk"
    root.mkdir(parents=True)
    cases = {
        "u8.wav": (SR, 1, "PCM_U8"),
        "s16.wav": (SR, 1, "PCM_16"),
        "s24.flac": (SR, 1, "PCM_24"),
        "s24.wav": (SR, 1, "PCM_24"),
        "f32.wav": (SR, 1, "FLOAT"),
        "f64.wav": (SR, 1, "DOUBLE"),
        "stereo.wav": (SR, 2, "FLOAT"),
        "six.wav": (SR, 6, "FLOAT"),
        "r8k.wav": (8000, 1, "FLOAT"),
        "r22k.wav": (22050, 1, "FLOAT"),
        "r44k.flac": (44100, 2, "PCM_16"),
        "r48k.wav": (48000, 1, "PCM_24"),
    }
    for name, (sr, channels, subtype) in cases.items():
        sf.write(root / name, _tone(0.5, sr, channels), sr, subtype=subtype)
    with pytest.warns(UserWarning, match="1 file\\(s\\) recorded below 16000 Hz were resampled up"):
        cached = build_cache(
            FolderCorpus(root.parent), SR, tmp_path / "cache", num_workers=1, progress=False
        )
    report = json.loads((cached.path / "report.json").read_text())
    assert {u["path"]: u["orig_sr"] for u in report["below_sample_rate"]} == {
        "spk/r8k.wav": 8000
    }
    by_name = {Path(e.path).name: i for i, e in enumerate(cached.entries)}
    reference = cached.get(by_name["f32.wav"])
    for name, (sr, channels, _subtype) in cases.items():
        entry = cached.entries[by_name[name]]
        assert entry.orig_sr == sr
        assert entry.length == SR // 2, name  # 0.5 s at the corpus rate, whatever the source
        x = cached.get(by_name[name])
        assert np.isfinite(x).all()
        if sr == SR and channels == 1:  # same tone: only the quantisation differs
            atol = {"PCM_U8": 1e-2, "PCM_16": 1e-4}.get(_subtype, 1e-6)
            np.testing.assert_allclose(x, reference, atol=atol)
    # channels are averaged: the stereo tone has amplitudes 0.15 and 0.3
    np.testing.assert_allclose(cached.get(by_name["stereo.wav"]), 0.75 * reference, atol=1e-6)


# --------------------------------------------------------------------------------------------
# corpus layout


def test_missing_or_wrong_corpus_roots_are_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(UserFacingError, match="nowhere: corpus folder does not exist"):
        FolderCorpus(missing).files()
    a_file = tmp_path / "a_file.wav"
    a_file.write_bytes(b"")
    with pytest.raises(UserFacingError, match="a_file.wav: corpus root is not a directory"):
        FolderCorpus(a_file).files()
    empty = tmp_path / "texts"
    (empty / "spk").mkdir(parents=True)
    (empty / "spk" / "notes.txt").write_text("no audio here")
    with pytest.raises(UserFacingError, match="texts: no audio files found"):
        FolderCorpus(empty).files()
    # a folder corpus asked for as VCTK: the layout error names the root and what is expected
    write_corpus(tmp_path / "not_vctk", speakers=1, files=1, seconds=0.1)
    with pytest.raises(UserFacingError) as info:
        VCTKCorpus(tmp_path / "not_vctk").files()
    assert "not_vctk" in _one_line(info.value, tmp_path / "not_vctk")


# --------------------------------------------------------------------------------------------
# short and silent files


def test_files_shorter_than_a_patch_or_the_minimum_are_reported(tmp_path: Path) -> None:
    root = write_corpus(tmp_path / "corpus", speakers=2, files=1, seconds=0.05)  # 800 samples
    dm = SuperResDataModule(
        FolderCorpus, str(root), ["spk1"], SR, 4, patch_len=2048, batch_size=2,
        cache_dir=str(tmp_path / "cache"), prepare_workers=1,
    )  # fmt: skip
    dm.prepare_data()
    with pytest.raises(UserFacingError, match="no training utterance is at least patch_len=2048"):
        dm.setup("fit")
    # evaluation: a file under 64 low-res samples is left out, named in a warning
    tiny = write_corpus(tmp_path / "tiny", speakers=1, files=1, seconds=0.01)  # 160 samples
    dm = SuperResDataModule(
        FolderCorpus, str(tiny), "*", SR, 4, cache_dir=str(tmp_path / "cache"), prepare_workers=1
    )
    dm.prepare_data()
    with pytest.warns(UserWarning, match="shorter than 256 samples are left out of evaluation"):
        dm.setup("test")
    assert dm.short_eval == ["spk0/utt0.wav"] and dm.test_indices == []


def _eval_cfg(overrides: list[str], tmp_path: Path) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("evaluate", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "eval")
        cfg.paths.data_dir = str(tmp_path / "data")
    return cfg


def test_silent_file_gives_finite_metrics_everywhere(tmp_path: Path) -> None:
    root = tmp_path / "corpus" / "spk"
    root.mkdir(parents=True)
    sf.write(root / "silent.wav", np.zeros(SR // 2, np.float32), SR, subtype="FLOAT")
    sf.write(root / "voice.wav", voiced_signal(np.random.default_rng(0), 0.5, SR), SR)
    cfg = _eval_cfg(
        ["model=cubic", "data=folder", f"data.root={root.parent}", "data.test_speakers=*",
         "ratio=4", "sample_rate=16000", "lowpass=chebyshev", "device=cpu",
         f"data.cache_dir={tmp_path}/cache", "data.prepare_workers=1"],
        tmp_path,
    )  # fmt: skip
    result = evaluate(cfg)
    metrics = json.loads(Path(result["metrics_path"]).read_text())
    assert metrics["n_files"] == 2
    for who in ("model", "cubic"):
        assert all(math.isfinite(v) for v in metrics[who].values()), metrics[who]
    with (Path(cfg.paths.output_dir) / "per_file.csv").open() as f:
        rows = {Path(r["name"]).name: r for r in csv.DictReader(f)}
    # PESQ/STOI are undefined on silence (NaN, named in a warning: tests/test_perceptual.py)
    metric_columns = [*METRIC_KEYS, *(f"cubic_{k}" for k in METRIC_KEYS)]
    assert set(metric_columns) <= set(rows["silent.wav"]) and len(metric_columns) == 12
    for row in rows.values():
        assert all(math.isfinite(float(row[k])) for k in metric_columns), row
    # silence in, silence out: SNR 0 dB and LSD 0 (REFERENCE section 5 with its epsilons)
    silent = rows["silent.wav"]
    assert float(silent["snr"]) == 0.0 and float(silent["lsd"]) == 0.0, silent


def test_evaluating_only_too_short_files_is_an_error(tmp_path: Path) -> None:
    tiny = write_corpus(tmp_path / "tiny", speakers=1, files=1, seconds=0.01)
    cfg = _eval_cfg(
        ["model=cubic", "data=folder", f"data.root={tiny}", "data.test_speakers=*", "ratio=4",
         "sample_rate=16000", "device=cpu", f"data.cache_dir={tmp_path}/cache"],
        tmp_path,
    )  # fmt: skip
    with pytest.warns(UserWarning), pytest.raises(UserFacingError, match="no held-out file"):
        evaluate(cfg)


# --------------------------------------------------------------------------------------------
# configs: unknown choices, ratios that do not fit


def test_unknown_config_choice_lists_the_valid_ones(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "model=nope", f"hydra.run.dir={tmp_path}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "Could not find 'model/nope'" in proc.stderr
    options = proc.stderr.split("Available options in 'model':")[1]
    for name in ("audiounet", "audiounet_small", "cubic", "dnn", "tfilm"):
        assert f"\t{name}\n" in options


@pytest.mark.parametrize(
    ("override", "problem"),
    [
        ("model.ratio=2", "invalid config (model): model ratio 2 differs from the task ratio 4"),
        ("data.patch_len=3", "patch_len=3 is shorter than one low-res sample"),
        ("ratio=0", "ratio must be a positive integer, got 0"),
        # a config error raised inside a config built inside a config (objective in module)
        ("objective.generator_spectrum=true", "needs a loss that takes the generator's spectrum"),
    ],
)
def test_a_ratio_that_does_not_fit_stops_before_any_work(tmp_path, tiny_corpus, override, problem):
    cfg = compose_train(
        ["data=folder", f"data.root={tiny_corpus}", "data.test_speakers=[spk2]", "logger=none",
         "trainer=cpu", override],
        tmp_path,
    )  # fmt: skip
    with pytest.raises(ConfigError) as info:
        train(cfg)
    assert problem in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "data" / "cache").exists()  # nothing was prepared


# --------------------------------------------------------------------------------------------
# checkpoints: another task, untrusted content


def _checkpoint(path: Path, ratio: int = 4, sample_rate: int = SR, **hp_changes) -> Path:
    module = SuperResolutionModule(
        model={**TINY_MODEL, "ratio": ratio}, ratio=ratio, sample_rate=sample_rate,
        lowpass="chebyshev",
    )  # fmt: skip
    hp = {**dict(module.hparams), **hp_changes}
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": hp}, path)
    return path


@pytest.mark.parametrize(("key", "value"), [("ratio", 2), ("sample_rate", 48000)])
def test_checkpoint_of_another_task_is_refused(tmp_path: Path, key: str, value: int) -> None:
    ckpt = _checkpoint(tmp_path / "r4.ckpt")
    cfg = _eval_cfg([f"ckpt_path={ckpt}", f"{key}={value}"], tmp_path)
    with pytest.raises(CheckpointError) as info:
        build_for_evaluation(cfg)
    stored = 4 if key == "ratio" else SR
    assert f"trained with {key}={stored}, but {key}={value}" in _one_line(info.value, ckpt)


def test_evaluate_cli_prints_one_line_for_a_checkpoint_of_another_ratio(tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path / "r4.ckpt")
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "evaluate.py"), f"ckpt_path={ckpt}", "ratio=2",
         f"hydra.run.dir={tmp_path / 'eval'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"Error: {ckpt}: the checkpoint was trained with ratio=4, but ratio=2 was asked for; "
        "a model only works at the ratio it was trained for"
    )


def test_resuming_from_a_bad_or_foreign_checkpoint_is_one_line(tmp_path, tiny_corpus) -> None:
    torn = tmp_path / "torn.ckpt"
    torn.write_bytes(b"PK\x03\x04 the first bytes of a checkpoint")
    other = _checkpoint(tmp_path / "r2.ckpt", ratio=2)
    for ckpt, problem in ((torn, "not a readable checkpoint"), (other, "trained with ratio=2")):
        cfg = compose_train(
            ["data=folder", f"data.root={tiny_corpus}", "data.test_speakers=[spk2]",
             "logger=none", "trainer=cpu", f"ckpt_path={ckpt}", *TINY_OVERRIDES],
            tmp_path,
        )  # fmt: skip
        with pytest.raises(CheckpointError) as info:
            train(cfg)
        assert problem in _one_line(info.value, ckpt)


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_untrusted_checkpoints_run_no_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"x": _Payload(marker)}}, evil)
    with pytest.raises(CheckpointError, match="evil.ckpt: not a readable checkpoint"):
        load_checkpoint(evil)
    assert not marker.exists()
    foreign = _checkpoint(
        tmp_path / "foreign.ckpt", model={"_target_": "os.system", "command": "touch pwned"}
    )
    cfg = _eval_cfg([f"ckpt_path={foreign}"], tmp_path)
    with pytest.raises(CheckpointError, match="refusing to build 'os.system'"):
        build_for_evaluation(cfg)
    assert not marker.exists()


def test_run_task_turns_user_errors_into_one_line_and_keeps_bugs(monkeypatch) -> None:
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)

    def bad_file(_cfg):
        raise AudioFileError("corpus/a.wav: cannot decode audio (Format not recognised.)")

    with pytest.raises(SystemExit) as info:
        run_task(bad_file, None)
    assert info.value.code == "Error: corpus/a.wav: cannot decode audio (Format not recognised.)"

    def bug(_cfg):
        raise KeyError("a bug keeps its traceback")

    with pytest.raises(KeyError):
        run_task(bug, None)
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(AudioFileError):
        run_task(bad_file, None)
