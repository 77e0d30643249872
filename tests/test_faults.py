"""Faults: a killed training resumes, a killed preparation completes, a full or read-only disk
gives a clear error and loses nothing, one failing job of a multirun does not stop the others."""

from __future__ import annotations

import csv
import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import open_dict

from audio_superres import utils
from audio_superres.checkpoint import AtomicCheckpointIO, remove_stale_temporaries
from audio_superres.data.cache import build_cache
from audio_superres.data.corpora import FolderCorpus
from audio_superres.errors import OutputError, UserFacingError
from audio_superres.tasks.train import train
from audio_superres.utils import atomic_write_json, atomic_write_text, ensure_writable_dir

from .conftest import REPO, write_corpus
from .test_configs import compose_train

TINY = ["model.filters=[8,16]", "model.kernels=[9,5]", "model.bottleneck_filters=16"]


def _env() -> dict[str, str]:
    src = str(REPO / "src")
    path = os.environ.get("PYTHONPATH", "")
    return {
        **os.environ,
        "PYTHONPATH": f"{src}{os.pathsep}{path}" if path else src,
        "PYTHONUNBUFFERED": "1",
    }


def _wait_until(predicate, proc: subprocess.Popen, what: str, limit_s: float = 240) -> None:
    """Poll `predicate` while `proc` runs (a bound on a hung test, not a timing check)."""
    deadline = time.monotonic() + limit_s
    while not predicate():
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"process ended (rc {proc.returncode}) before {what}:\n{out[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


# --------------------------------------------------------------------------------------------
# disk full, read-only outputs


def _disk_full(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_keeps_the_old_file_and_names_the_path(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "out" / "metrics.json"
    atomic_write_json(target, {"snr": 1.0})
    monkeypatch.setattr(utils.os, "fsync", _disk_full)
    with pytest.raises(OutputError) as info:
        atomic_write_text(target, "x" * 100_000)
    message = str(info.value)
    assert str(target) in message and "disk full" in message and "\n" not in message
    assert info.value.errno == errno.ENOSPC
    assert json.loads(target.read_text()) == {"snr": 1.0}  # the old file survives
    assert [p.name for p in target.parent.iterdir()] == ["metrics.json"]  # no temporary left


def test_atomic_writes_get_the_umask_permissions_not_owner_only(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "summary.md", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "summary.md").stat().st_mode & 0o777 == 0o644


def test_checkpoint_save_is_atomic(tmp_path: Path, monkeypatch) -> None:
    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"global_step": 5, "w": torch.ones(3)}, path)

    def half_then_full(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        _disk_full()

    monkeypatch.setattr(torch, "save", half_then_full)
    with pytest.raises(OutputError, match="last.ckpt: cannot write \\(disk full"):
        io.save_checkpoint({"global_step": 9, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert io.load_checkpoint(path)["global_step"] == 5
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]
    # a temporary left by a save that was SIGKILLed is cleared at the next start
    (path.parent / ".last.abc123.tmp.ckpt").write_bytes(b"torn")
    assert [p.name for p in remove_stale_temporaries(path.parent)] == [".last.abc123.tmp.ckpt"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]


def test_unwritable_output_folder_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    blocker = tmp_path / "runs"
    blocker.write_text("a file where the output folder should be")
    with pytest.raises(OutputError, match="runs/train: cannot write"):
        ensure_writable_dir(blocker / "train")

    read_only = tmp_path / "read_only"
    read_only.mkdir()
    if os.geteuid() != 0:
        read_only.chmod(0o555)
    else:  # root writes through any permission bits: make the file system say EROFS instead
        def erofs(*_args, **_kwargs):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))

        monkeypatch.setattr(utils.tempfile, "mkstemp", erofs)
    try:
        with pytest.raises(OutputError) as info:
            ensure_writable_dir(read_only)
    finally:
        read_only.chmod(0o755)
    assert str(read_only) in str(info.value)
    assert "read-only" in str(info.value) or "permission denied" in str(info.value)
    assert isinstance(info.value, UserFacingError)


# --------------------------------------------------------------------------------------------
# a training killed with SIGKILL resumes from last.ckpt


def _steps_logged(metrics_csv: Path) -> list[int]:
    """Steps in the CSV log (read leniently: the kill may have torn its last line)."""
    if not metrics_csv.is_file():
        return []
    steps = []
    for row in csv.DictReader(metrics_csv.open()):
        try:
            steps.append(int(row["step"]))
        except (KeyError, TypeError, ValueError):
            continue
    return steps


def test_sigkill_mid_epoch_resumes_from_last_checkpoint(tmp_path: Path) -> None:
    every = 3
    corpus = write_corpus(tmp_path / "corpus")
    run_dir = tmp_path / "run"
    args = [
        sys.executable,
        str(REPO / "train.py"),
        "data=folder",
        f"data.root={corpus}",
        "data.test_speakers=[spk2]",
        "data.patch_len=1024",
        "data.batch_size=2",
        "data.patches_per_epoch=100000",  # every step of this test is mid-epoch
        f"data.cache_dir={tmp_path}/cache",
        "trainer=cpu",
        "trainer.val_check_interval=100000",
        "trainer.num_sanity_val_steps=0",
        "trainer.log_every_n_steps=1",
        "trainer.enable_progress_bar=false",
        "logger=csv",
        "+logger.csv.flush_logs_every_n_steps=1",
        f"callbacks.last_checkpoint.every_n_train_steps={every}",
        "test_after_fit=false",
        "ratio=4",
        "lowpass=none",  # the cheapest input: this test is about the kill, not the filter
        "seed=3",
        f"hydra.run.dir={run_dir}",
        *TINY,
    ]
    last = run_dir / "checkpoints" / "last.ckpt"
    metrics_csv = run_dir / "csv" / "metrics.csv"

    def checkpointed_step() -> int:
        return int(torch.load(last, map_location="cpu", weights_only=True)["global_step"])

    proc = subprocess.Popen(
        [*args, "trainer.max_steps=100000"],
        cwd=tmp_path,
        env=_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # kill it once it has saved last.ckpt twice, some steps after the second save
        _wait_until(lambda: last.is_file() and checkpointed_step() >= 2 * every, proc, "2nd save")
        _wait_until(
            lambda: max(_steps_logged(metrics_csv), default=0) > 2 * every + 1, proc, "steps"
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    # steps done when killed: the log's `step` column is 0-based, and the line of the step being
    # saved may not be flushed yet when the kill lands (the checkpoint callback runs first)
    reached = max(_steps_logged(metrics_csv)) + 1
    resumed_from = checkpointed_step()
    assert reached - every <= resumed_from <= reached + 1  # at most `every` steps lost

    # rerun in the same run directory (in this process: the kill above was the real one)
    cfg = compose_train(
        [a for a in args[2:] if not a.startswith("hydra.")]
        + ["ckpt_path=last", f"trainer.max_steps={resumed_from + 2}"],
        tmp_path,
    )
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
    train(cfg)
    assert checkpointed_step() == resumed_from + 2
    steps_after = _steps_logged(metrics_csv)  # this run's log replaced the killed one's
    assert steps_after and min(steps_after) >= resumed_from  # it went on, not from step 0
    assert not list(last.parent.glob(".*.tmp*"))


# --------------------------------------------------------------------------------------------
# a preparation killed with SIGKILL reruns to a complete cache

_SLOW_BUILD = """
import sys, time
from audio_superres.data import cache
from audio_superres.data.corpora import FolderCorpus
real = cache._decode
def slow(job):
    time.sleep(0.2)
    return real(job)
cache._decode = slow
cache.build_cache(FolderCorpus(sys.argv[1]), 16000, sys.argv[2], num_workers=1, progress=False)
"""


def test_sigkilled_preparation_reruns_to_a_complete_cache(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus", speakers=3, files=4, seconds=0.5)
    cache_dir = tmp_path / "cache"
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_SLOW_BUILD), str(corpus), str(cache_dir)],
        env=_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def logged() -> int:
        logs = list(cache_dir.glob(".*.partial/entries.jsonl"))
        return len(logs[0].read_text().splitlines()) if logs else 0

    try:
        _wait_until(lambda: logged() >= 3, proc, "3 files prepared")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not [p for p in cache_dir.iterdir() if not p.name.startswith(".")]  # nothing final

    resumed = build_cache(FolderCorpus(corpus), 16000, cache_dir, num_workers=1, progress=False)
    report = json.loads((resumed.path / "report.json").read_text())
    assert report["prepared"] == 12 and report["resumed_after_files"] >= 3
    fresh = build_cache(
        FolderCorpus(corpus), 16000, tmp_path / "fresh", num_workers=1, progress=False
    )
    assert resumed.entries == fresh.entries
    np.testing.assert_array_equal(resumed.audio, fresh.audio)


# --------------------------------------------------------------------------------------------
# a multirun with one failing job


def test_one_failing_job_of_a_multirun_does_not_stop_the_others(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus", speakers=2, files=1, seconds=0.5)
    sweep = tmp_path / "multi"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "train.py"),
            "-m",
            f"data.root={tmp_path / 'missing'},{corpus}",  # job 0 fails, job 1 trains
            "data=folder",
            "data.test_speakers=[spk1]",
            "data.patch_len=1024",
            "data.batch_size=2",
            f"data.cache_dir={tmp_path}/cache",
            "trainer=cpu",
            "trainer.max_steps=2",
            "trainer.num_sanity_val_steps=0",
            "trainer.enable_progress_bar=false",
            "logger=none",
            "lowpass=none",
            "test_after_fit=false",
            f"hydra.sweep.dir={sweep}",
            *TINY,
        ],
        cwd=tmp_path,
        env={k: v for k, v in _env().items() if k != "HYDRA_FULL_ERROR"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = proc.stdout + proc.stderr
    assert f"{tmp_path / 'missing'}: corpus folder does not exist" in output  # not hidden
    assert proc.returncode != 0  # the sweep as a whole reports the failure
    assert not (sweep / "0" / "checkpoints" / "last.ckpt").exists()
    last = sweep / "1" / "checkpoints" / "last.ckpt"
    assert last.is_file(), output[-3000:]  # ... after running the job that can run
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 2


def test_every_trainer_config_writes_checkpoints_atomically(tmp_path: Path) -> None:
    from hydra.utils import instantiate

    for trainer in ("default", "cpu", "gpu"):
        cfg = compose_train([f"trainer={trainer}"], tmp_path)
        targets = [p["_target_"] for p in cfg.trainer.plugins]
        assert targets == ["audio_superres.checkpoint.AtomicCheckpointIO"], trainer
    built = instantiate(compose_train(["trainer=cpu"], tmp_path).trainer, logger=False)
    assert isinstance(built.strategy.checkpoint_io, AtomicCheckpointIO)


def test_disk_full_during_preparation_is_named_and_the_rerun_completes(
    tmp_path: Path, monkeypatch
) -> None:
    from audio_superres.data import cache as cache_mod

    corpus = write_corpus(tmp_path / "corpus", speakers=2, files=2, seconds=0.3)
    monkeypatch.setattr(cache_mod.os, "fsync", _disk_full)
    with pytest.raises(OutputError) as info:
        build_cache(FolderCorpus(corpus), 16000, tmp_path / "cache", num_workers=1, progress=False)
    assert ".partial: cannot write (disk full" in str(info.value)
    monkeypatch.undo()
    cached = build_cache(
        FolderCorpus(corpus), 16000, tmp_path / "cache", num_workers=1, progress=False
    )
    assert len(cached) == 4
