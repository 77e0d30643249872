"""The real scripts as a user runs them: train.py then evaluate.py, as subprocesses."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO, SHARED

TINY_MODEL = ["model.filters=[8,16]", "model.kernels=[9,5]", "model.bottleneck_filters=16"]


def run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, succeed: bool = True
) -> subprocess.CompletedProcess:
    """Run a script of the repository; assert it succeeds (or, with succeed=False, fails)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "1", **(env or {})}
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert (proc.returncode == 0) == succeed, (
        f"{args}\nSTDOUT:\n{proc.stdout[-4000:]}\nSTDERR:\n{proc.stderr[-4000:]}"
    )
    return proc


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def train_args(corpus: Path, run_dir: Path, logger: str = "csv") -> list[str]:
    return [
        str(REPO / "train.py"),
        "data=folder",
        f"data.root={corpus}",
        "data.test_speakers=[spk2]",
        "data.patch_len=2048",
        "data.batch_size=4",
        f"data.cache_dir={run_dir.parent}/cache",
        "trainer=cpu",
        "trainer.max_steps=6",
        "trainer.val_check_interval=3",
        f"logger={logger}",
        "ratio=4",
        "sample_rate=16000",
        "lowpass=chebyshev",
        "seed=7",
        f"hydra.run.dir={run_dir}",
        *TINY_MODEL,
    ]


@pytest.mark.slow
def test_train_then_evaluate(tiny_corpus, tmp_path):
    run_dir = tmp_path / "train"
    proc = run(train_args(tiny_corpus, run_dir), cwd=tmp_path)
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    train_metrics = json.loads((run_dir / "metrics.json").read_text())
    assert Path(last_line(proc.stdout)) == run_dir / "metrics.json"
    assert train_metrics["n_files"] == 2 and train_metrics["ratio"] == 4

    eval_dir = tmp_path / "eval"
    proc = run(
        [
            str(REPO / "evaluate.py"),
            f"ckpt_path={run_dir}/checkpoints/best.ckpt",
            f"hydra.run.dir={eval_dir}",
        ],
        cwd=tmp_path,
    )
    assert Path(last_line(proc.stdout)) == eval_dir / "metrics.json"
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    assert set(metrics) >= {"model", "cubic", "n_files", "ratio", "lowpass", "sample_rate"}
    for who in ("model", "cubic"):
        assert set(metrics[who]) >= {"snr", "lsd", "lsd_hf"}
    assert (metrics["ratio"], metrics["lowpass"], metrics["sample_rate"]) == (4, "chebyshev", 16000)
    # the best checkpoint evaluated on the same held-out files gives the same numbers
    assert metrics["model"]["snr"] == pytest.approx(train_metrics["model"]["snr"], abs=1e-4)
    rows = list(csv.DictReader((eval_dir / "per_file.csv").open()))
    assert len(rows) == metrics["n_files"] == 2
    assert {r["speaker"] for r in rows} == {"spk2"}
    wavs = sorted(p.name for p in (eval_dir / "examples").glob("*.wav"))
    assert any(w.endswith("_sr.wav") for w in wavs) and any(w.endswith("_lr.wav") for w in wavs)
    assert "Super Resolution" in (eval_dir / "report" / "index.html").read_text()

    # a checkpoint of another ratio is refused with a message naming it
    bad = subprocess.run(
        [
            sys.executable,
            str(REPO / "evaluate.py"),
            f"ckpt_path={run_dir}/checkpoints/best.ckpt",
            "ratio=2",
            f"hydra.run.dir={tmp_path / 'bad'}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert bad.returncode != 0 and "trained with ratio=4" in bad.stderr

    # resume from the last checkpoint and train further
    run(train_args(tiny_corpus, run_dir) + ["ckpt_path=last", "trainer.max_steps=9"], cwd=tmp_path)
    resumed = json.loads((run_dir / "metrics.json").read_text())
    assert resumed["global_step"] == 9


@pytest.mark.slow
def test_wandb_offline_run_has_metrics_and_media(tiny_corpus, tmp_path):
    run_dir = tmp_path / "train"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    clean.update({"HOME": str(tmp_path), "PYTHONUNBUFFERED": "1"})
    proc = subprocess.run(
        [sys.executable, *train_args(tiny_corpus, run_dir, logger="wandb")],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, list((run_dir / "wandb").iterdir())
    files = runs[0] / "files"
    # the offline run's record log holds every logged key and the resolved config
    records = next(runs[0].glob("run-*.wandb")).read_bytes()
    for key in (
        "val/snr",
        "val/cubic/snr",
        "val/lsd_hf",
        "val/snr_gain",
        "test/snr",
        "test/cubic/lsd",
        "train/loss",
        "versions",
        "torchaudio",
        '"seed"',
    ):
        assert key.encode() in records, key
    audio = list((files / "media" / "audio").rglob("*.wav"))
    assert {p.name.split("_")[0] for p in audio} == {"HR", "LR", "cubic", "SR"}
    assert list((files / "media" / "images" / "val").glob("spectrogram_*.png"))
    table = next((files / "media" / "table").rglob("per_file*.table.json"))
    assert len(json.loads(table.read_text())["data"]) == 2


def test_cubic_on_real_vctk_clips_matches_the_reference(tmp_path):
    """REFERENCE section 6, computed there by an independent numpy/scipy script."""
    clips = SHARED / "data" / "vctk_test_clips" / "hr"
    assert clips.is_dir(), f"{clips} missing: set AUDIO_SUPERRES_SHARED to the shared/ folder"
    expected = {  # (ratio, lowpass): (SNR, LSD, LSD-HF)
        (4, "chebyshev"): (15.47, 3.32, 3.77),
        (4, "none"): (15.04, 2.95, 3.38),
        (2, "chebyshev"): (22.95, 2.39, 3.02),
    }
    by_ratio: dict[int, dict] = {}
    for ratio, lowpasses in ((4, "[chebyshev,none]"), (2, "[chebyshev]")):
        out = tmp_path / f"r{ratio}"
        proc = run(
            [
                str(REPO / "evaluate.py"),
                "model=cubic",
                "data=folder",
                f"data.root={clips}",
                "data.test_speakers=*",
                f"data.cache_dir={tmp_path}/cache",
                f"ratio={ratio}",
                "sample_rate=16000",
                f"test_lowpass={lowpasses}",
                f"perceptual_metrics={str(ratio == 4).lower()}",  # PESQ/STOI: once is enough here
                f"hydra.run.dir={out}",
            ],
            cwd=tmp_path,
        )
        by_ratio[ratio] = json.loads(Path(last_line(proc.stdout)).read_text())["by_lowpass"]
    for (ratio, lowpass), (snr, lsd, lsd_hf) in expected.items():
        metrics = by_ratio[ratio][lowpass]
        assert metrics["n_files"] == 5
        assert metrics["cubic"]["snr"] == pytest.approx(snr, abs=0.05)
        assert metrics["cubic"]["lsd"] == pytest.approx(lsd, abs=0.01)
        assert metrics["cubic"]["lsd_hf"] == pytest.approx(lsd_hf, abs=0.01)
        # the model goes through chunked inference (inference.py): equal to float precision
        for key, value in metrics["cubic"].items():
            assert metrics["model"][key] == pytest.approx(value, abs=1e-3)
