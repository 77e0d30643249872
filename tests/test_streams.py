"""What a training run draws and validates on, through the real train.py: splits.json, epochs
of the size asked for under DDP, and a resumed run that continues instead of replaying."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from audio_superres.checkpoint import load_checkpoint

from .conftest import REPO, write_corpus
from .stream_recorder import read_draws
from .test_configs import compose_train
from .test_e2e import TINY_MODEL, run


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """4 speakers x 10 utterances of 0.5 s; spk3 is the test speaker, 3 of the 30 others
    validate (a tenth)."""
    return write_corpus(tmp_path / "corpus", speakers=4, files=10, seconds=0.5)


def train_args(corpus: Path, run_dir: Path, record_dir: Path, *extra: str) -> list[str]:
    return [
        str(REPO / "train.py"),
        "data=folder",
        f"data.root={corpus}",
        "data.test_speakers=[spk3]",
        "data.patch_len=2048",
        "data.batch_size=4",
        f"data.cache_dir={run_dir.parent}/cache",
        "trainer=cpu",
        "trainer.num_sanity_val_steps=0",
        "logger=csv",
        "lowpass=random",
        "seed=11",
        "test_after_fit=false",
        f"hydra.run.dir={run_dir}",
        "+callbacks.record._target_=tests.stream_recorder.RecordDraws",
        f"+callbacks.record.out_dir={record_dir}",
        *TINY_MODEL,
        *extra,
    ]


def by_step(records: list[dict], kind: str) -> dict[int, object]:
    """step -> patches digest (kind "train") or filter specs (kind "filters")."""
    key = "patches" if kind == "train" else "specs"
    return {r["step"]: r[key] for r in records if r["kind"] == kind}


def test_checkpoint_selection_monitors_validation_only(tmp_path):
    cfg = compose_train([], tmp_path)
    monitored = [c.monitor for c in cfg.callbacks.values() if c and c.get("monitor")]
    assert monitored and all(m.startswith("val/") for m in monitored)


@pytest.mark.slow
def test_splits_json_and_validation_files(corpus, tmp_path):
    run_dir, record = tmp_path / "run", tmp_path / "record"
    run(
        train_args(corpus, run_dir, record, "trainer.max_steps=2", "trainer.val_check_interval=2"),
        cwd=tmp_path,
    )
    splits = json.loads((run_dir / "splits.json").read_text())
    assert sorted(splits) == ["test", "train", "val"]
    train, val, test = (set(splits[k]) for k in ("train", "val", "test"))
    assert test == {f"spk3/utt{i}.wav" for i in range(10)}  # the held-out speaker, as before
    assert len(val) == 3 and not val & test and not val & train
    assert len(train | val | test) == 40
    # validation ran on exactly the files of splits.json's val, each once
    validated = [n for r in read_draws(record) if r["kind"] == "val" for n in r["names"]]
    assert sorted(validated) == sorted(val)


@pytest.mark.slow
def test_resumed_run_draws_what_the_uninterrupted_run_draws(corpus, tmp_path):
    # 32 patches of batch 4: 8 batches an epoch; stop mid-epoch at 5, go on past an epoch to 12
    common = ["data.patches_per_epoch=32", "trainer.val_check_interval=100"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    run(
        train_args(corpus, whole, tmp_path / "rec_whole", *common, "trainer.max_steps=12"),
        cwd=tmp_path,
    )
    run(
        train_args(corpus, parts, tmp_path / "rec_parts", *common, "trainer.max_steps=5"),
        cwd=tmp_path,
    )
    run(
        train_args(
            corpus, parts, tmp_path / "rec_parts", *common, "trainer.max_steps=12", "ckpt_path=last"
        ),
        cwd=tmp_path,
    )
    a, b = read_draws(tmp_path / "rec_whole"), read_draws(tmp_path / "rec_parts")
    for kind in ("train", "filters"):
        uninterrupted, resumed = by_step(a, kind), by_step(b, kind)
        assert sorted(uninterrupted) == sorted(resumed) == list(range(12))
        assert [resumed[s] for s in range(5, 12)] == [uninterrupted[s] for s in range(5, 12)]
        assert len({repr(v) for v in uninterrupted.values()}) == 12  # every batch its own draw
    # each step ran once: the resumed run did not replay steps 0..4
    assert Counter(r["step"] for r in b if r["kind"] == "train") == Counter(range(12))
    assert load_checkpoint(parts / "checkpoints" / "last.ckpt")["global_step"] == 12


@pytest.mark.slow
def test_ddp_epoch_is_patches_per_epoch_split_over_ranks(corpus, tmp_path):
    run_dir, record = tmp_path / "ddp", tmp_path / "record"
    run(
        train_args(
            corpus,
            run_dir,
            record,
            "trainer=ddp",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            "trainer.max_epochs=1",
            "trainer.max_steps=-1",
            "trainer.val_check_interval=8",
            "data.patches_per_epoch=64",
            "data.batch_size=4",
        ),
        cwd=tmp_path,
    )
    assert load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 8
    ranks = [read_draws(record, rank) for rank in (0, 1)]
    patches = [[r["patches"] for r in draws if r["kind"] == "train"] for draws in ranks]
    assert [len(p) for p in patches] == [8, 8]  # 64 patches = 2 ranks x 8 batches of 4
    assert not set(patches[0]) & set(patches[1])  # the ranks draw different patches
    filters = [[r["specs"] for r in draws if r["kind"] == "filters"] for draws in ranks]
    assert filters[0] != filters[1]
    # validation: every file of the val split on exactly one rank, none padded in twice
    val = json.loads((run_dir / "splits.json").read_text())["val"]
    seen = [n for draws in ranks for r in draws if r["kind"] == "val" for n in r["names"]]
    assert sorted(seen) == sorted(val)
