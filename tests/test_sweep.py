"""Grids: filter-mismatch evaluation, multirun summaries (failed jobs included), launchers, DDP."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from audio_superres.module import SuperResolutionModule
from audio_superres.report import sweep
from audio_superres.tasks.mismatch import MISMATCH_COLUMNS, parse_test_lowpass

from .conftest import CONF_DIR, REPO
from .test_e2e import TINY_MODEL, run

HEADER = ",".join(MISMATCH_COLUMNS)  # perceptual_metrics is off in train.py by default


def tiny_train(corpus: Path, cache: Path, multirun: bool = False) -> list[str]:
    return [
        str(REPO / "train.py"),
        *(["-m"] if multirun else []),
        "data=folder",
        f"data.root={corpus}",
        "data.test_speakers=[spk2]",
        "data.patch_len=2048",
        f"data.cache_dir={cache}",
        "trainer=cpu",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        "trainer.enable_progress_bar=false",
        "logger=csv",
        "ratio=4",
        "sample_rate=16000",
        *TINY_MODEL,
    ]


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.open()))


@pytest.mark.slow
def test_mismatch_grid_with_a_failed_job_then_evaluate(tiny_corpus, tmp_path):
    sweep_dir = tmp_path / "sweep"
    # job 0 trains with random filters; job 1 gets a bad value and fails inside the job
    proc = run(
        tiny_train(tiny_corpus, tmp_path / "cache", multirun=True)
        + [
            "lowpass=random",
            "data.batch_size=4,0",
            "test_lowpass=[none,chebyshev,elliptic]",
            f"hydra.sweep.dir={sweep_dir}",
        ],
        cwd=tmp_path,
        succeed=False,  # the multirun reports its failed job with a non-zero exit ...
    )
    assert "SWEEP INCOMPLETE: 1 of 2 jobs" in proc.stderr  # ... after the summary
    job = sweep_dir / "0"
    assert json.loads((job / "status.json").read_text())["status"] == "completed"
    failed = json.loads((sweep_dir / "1" / "status.json").read_text())
    assert failed["status"] == "failed" and "batch_size" in failed["error"]

    assert (job / "mismatch.csv").read_text().splitlines()[0] == HEADER
    mismatch = read_csv(job / "mismatch.csv")
    assert [r["test_lowpass"] for r in mismatch] == ["none", "chebyshev", "elliptic"]
    metrics = json.loads((job / "metrics.json").read_text())
    assert metrics["lowpass"] == "random" and metrics["test_lowpass"] == "none"
    assert list(metrics["by_lowpass"]) == ["none", "chebyshev", "elliptic"]
    assert metrics["model"] == metrics["by_lowpass"]["none"]["model"]
    # the filter changes the input: cubic scores differ between test filters
    assert len({round(float(r["cubic_lsd"]), 4) for r in mismatch}) == 3

    rows = read_csv(sweep_dir / "summary.csv")
    assert [(r["job"], r["status"], r["test_lowpass"]) for r in rows] == [
        ("0", "completed", "none"),
        ("0", "completed", "chebyshev"),
        ("0", "completed", "elliptic"),
        ("1", "failed", ""),
    ]
    assert rows[0]["train_lowpass"] == "random"
    assert float(rows[1]["snr_gain"]) == pytest.approx(
        float(mismatch[1]["model_snr"]) - float(mismatch[1]["cubic_snr"]), abs=1e-4
    )
    md = (sweep_dir / "summary.md").read_text()
    assert "1 completed, 1 failed" in md and "batch_size" in md
    for name in ("heatmap_snr_gain.png", "heatmap_lsd.png"):
        assert (sweep_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # re-aggregation from the job directories alone gives the same summary
    before = (sweep_dir / "summary.csv").read_text()
    (sweep_dir / "summary.csv").unlink()
    (sweep_dir / "heatmap_lsd.png").unlink()
    assert sweep.main([str(sweep_dir)]) == 0
    assert (sweep_dir / "summary.csv").read_text() == before
    assert (sweep_dir / "heatmap_lsd.png").is_file()

    # evaluate.py on the job's checkpoint under two filters reproduces the job's scores
    eval_dir = tmp_path / "eval"
    run(
        [
            str(REPO / "evaluate.py"),
            f"ckpt_path={metrics['checkpoint']}",
            "test_lowpass=[elliptic,none]",
            f"hydra.run.dir={eval_dir}",
        ],
        cwd=tmp_path,
    )
    evaluated = {r["test_lowpass"]: r for r in read_csv(eval_dir / "mismatch.csv")}
    assert list(evaluated) == ["elliptic", "none"]
    for r in mismatch:
        if r["test_lowpass"] in evaluated:
            for key in MISMATCH_COLUMNS[1:]:
                assert float(evaluated[r["test_lowpass"]][key]) == pytest.approx(
                    float(r[key]), rel=1e-4
                )
    eval_metrics = json.loads((eval_dir / "metrics.json").read_text())
    assert eval_metrics["test_lowpass"] == "elliptic"
    assert eval_metrics["model"] == eval_metrics["by_lowpass"]["elliptic"]["model"]
    page = (eval_dir / "report" / "index.html").read_text()
    assert "Filter mismatch" in page and "elliptic" in page


@pytest.mark.slow
def test_submitit_local_launcher_runs_a_grid(tiny_corpus, tmp_path):
    """The SLURM launcher's code path (submitit) on this machine, with the cubic baseline."""
    sweep_dir = tmp_path / "sweep"
    run(
        [
            str(REPO / "evaluate.py"),
            "-m",
            "hydra/launcher=local",
            "model=cubic",
            "data=folder",
            f"data.root={tiny_corpus}",
            "data.test_speakers=[spk2]",
            f"data.cache_dir={tmp_path / 'cache'}",
            "ratio=2",
            "sample_rate=16000",
            "device=cpu",
            "test_lowpass=[none,bessel]",
            "perceptual_metrics=false",
            f"hydra.sweep.dir={sweep_dir}",
        ],
        cwd=tmp_path,
    )
    assert any((sweep_dir / ".submitit").iterdir())
    rows = read_csv(sweep_dir / "summary.csv")
    assert [(r["job"], r["ratio"], r["test_lowpass"]) for r in rows] == [
        ("0", "2", "none"),
        ("0", "2", "bessel"),
    ]
    assert all(r["status"] == "completed" for r in rows)
    # cubic is the model here: model and cubic columns agree
    assert all(float(r["snr_gain"]) == pytest.approx(0, abs=1e-6) for r in rows)
    assert (sweep_dir / "0" / "mismatch.csv").read_text().startswith(HEADER)


@pytest.mark.slow
def test_ddp_on_cpu_with_two_processes(tiny_corpus, tmp_path):
    run_dir = tmp_path / "ddp"
    run(
        tiny_train(tiny_corpus, tmp_path / "cache")
        + [
            "trainer=ddp",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            "data.batch_size=2",
            "lowpass=random",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=tmp_path,
    )
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # tested on one device after the fit: every held-out file exactly once
    assert metrics["n_files"] == 2 and metrics["global_step"] == 2
    assert len(read_csv(run_dir / "per_file.csv")) == 2
    assert json.loads((run_dir / "status.json").read_text())["status"] == "completed"
    validated = read_csv(next((run_dir / "csv").glob("**/metrics.csv")))
    assert any(r.get("val/snr") for r in validated)


def test_summary_marks_jobs_without_results(tmp_path):
    """A job that died (status running, no metrics) is listed as incomplete, not dropped."""
    for n, status in ((0, "running"), (1, None)):
        hydra_dir = tmp_path / str(n) / ".hydra"
        hydra_dir.mkdir(parents=True)
        (hydra_dir / "overrides.yaml").write_text(f"- seed={n}\n- lowpass=none\n")
        (hydra_dir / "config.yaml").write_text(f"seed: {n}\nlowpass: {{kind: none}}\n")
        if status:
            (tmp_path / str(n) / "status.json").write_text(json.dumps({"status": status}))
    out = sweep.summarize(tmp_path)
    assert out["jobs"] == {"0": "incomplete", "1": "incomplete"}
    assert out["images"] == []  # nothing to draw
    assert "status: running" in (tmp_path / "summary.md").read_text()
    with pytest.raises(FileNotFoundError, match="sweep directory not found"):
        sweep.summarize(tmp_path / "nope")


def test_summary_rows_name_the_lowpass_config_not_its_kind(tmp_path):
    """lowpass=robust draws as kind `random`: its rows must still read `robust`, apart from
    lowpass=random's (Hydra's config choice, .hydra/hydra.yaml)."""
    for n, choice in ((0, "random"), (1, "robust")):
        hydra_dir = tmp_path / str(n) / ".hydra"
        hydra_dir.mkdir(parents=True)
        (hydra_dir / "overrides.yaml").write_text(f"- lowpass={choice}\n")
        (hydra_dir / "config.yaml").write_text("seed: 1\nlowpass: {kind: random}\n")
        (hydra_dir / "hydra.yaml").write_text(
            f"hydra:\n  runtime:\n    choices:\n      lowpass: {choice}\n")
        scores = {"model": {"snr": 10.0 + n, "lsd": 1.0}, "cubic": {"snr": 9.0, "lsd": 2.0}}
        metrics = {"lowpass": "random", "by_lowpass": {"none": scores}}
        (tmp_path / str(n) / "metrics.json").write_text(json.dumps(metrics))
        (tmp_path / str(n) / "status.json").write_text(json.dumps({"status": "completed"}))
    rows = {r["job"]: r["train_lowpass"] for r in sweep.collect(tmp_path)}
    assert rows == {"0": "random", "1": "robust"}


def test_parse_test_lowpass():
    pairs = parse_test_lowpass(["none", {"kind": "elliptic", "order": 4, "name": "ell4"}])
    assert [(n, s.kind) for n, s in pairs] == [("none", "none"), ("ell4", "elliptic")]
    assert pairs[1][1].order == 4
    with pytest.raises(ValueError, match="unique"):
        parse_test_lowpass(["bessel", "bessel"])
    with pytest.raises(ValueError, match="unknown lowpass kind"):
        parse_test_lowpass(["besel"])


def test_random_filters_fresh_in_training_reproducible_in_evaluation():
    module = SuperResolutionModule(
        model={"_target_": "audio_superres.models.CubicBaseline", "ratio": 4},
        ratio=4,
        sample_rate=16000,
        lowpass="random",
    )
    hr = np.random.default_rng(0).standard_normal((4, 2048)).astype(np.float32)
    import torch

    batch = torch.from_numpy(hr)
    a = module.make_inputs(batch, module._rng("train"))[1]
    b = module.make_inputs(batch, module._rng("train"))[1]
    assert not torch.equal(a, b)  # a fresh draw per batch
    module.on_validation_epoch_start()
    v1 = module.make_inputs(batch, module._rng("val"))[1]
    module.on_validation_epoch_start()
    v2 = module.make_inputs(batch, module._rng("val"))[1]
    torch.testing.assert_close(v1, v2)  # every validation sees the same inputs


def compose_with_hydra(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


@pytest.mark.parametrize(
    ("sweep_name", "keys"),
    [
        ("filter_mismatch", {"lowpass", "seed"}),
        ("ratios", {"ratio"}),
        ("depth", {"model_depth", "model_width"}),
    ],
)
def test_sweep_configs_define_their_grids(sweep_name, keys):
    cfg = compose_with_hydra([f"sweep={sweep_name}", "experiment=demo"])
    assert set(cfg.hydra.sweeper.params) == keys
    if sweep_name == "filter_mismatch":
        assert list(cfg.test_lowpass) == ["none", "chebyshev", "butterworth", "bessel", "elliptic"]
    if sweep_name == "depth":
        params = cfg.hydra.sweeper.params
        # the grid applies to every CPU-size family, not only the U-Net
        for model in ("audiounet_small", "tfilm_small"):
            for depth in str(params["model_depth"]).split(","):
                for width in str(params["model_width"]).split(","):
                    sized = compose_with_hydra(["experiment=demo", f"model={model}",
                                                f"model_depth={depth}", f"model_width={width}"])
                    filters = list(sized.model.filters)
                    assert len(filters) == len(sized.model.kernels) == int(depth)
                    assert filters[0] == int(width) and max(filters) <= 4 * int(width)
        dnn = compose_with_hydra(["model=dnn", "model_depth=2", "model_width=64"])
        assert list(dnn.model.hidden_sizes) == [64, 64]


def test_launcher_presets_compose():
    slurm = compose_with_hydra(["hydra/launcher=slurm", "hydra.launcher.gpus_per_node=4"])
    launcher = slurm.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.tasks_per_node == 4 and launcher.array_parallelism == 16
    joblib = compose_with_hydra(["hydra/launcher=parallel"])
    assert joblib.hydra.launcher._target_.endswith("JoblibLauncher")
    assert joblib.hydra.launcher.n_jobs == 2
    local = compose_with_hydra(["hydra/launcher=local"])
    assert local.hydra.launcher._target_.endswith("LocalLauncher")


def test_mismatch_demo_sweep_budget():
    cfg = compose_with_hydra(["sweep=filter_mismatch_demo", "experiment=demo"])
    params = cfg.hydra.sweeper.params
    assert params.lowpass == "none,chebyshev,butterworth,random,robust"
    assert str(params.seed) == "1234"
    assert cfg.trainer.max_time == "00:00:06:00" and cfg.data.test_max_files == 24
    assert len(cfg.test_lowpass) == 5 and cfg.model.filters == [32, 64, 128, 128]
