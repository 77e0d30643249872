"""The robustness benchmark: `evaluate.py ckpt_path=C degradations=robustness` (a small grid of
the same config here) writes robustness.csv, summary.md and heatmaps from a tiny checkpoint."""

from __future__ import annotations

import csv
import json

import pytest
from omegaconf import OmegaConf

from audio_superres.errors import ConfigError
from audio_superres.tasks.mismatch import parse_test_lowpass
from audio_superres.tasks.robustness import ROBUSTNESS_COLUMNS, grid_conditions

from .conftest import CONF_DIR, REPO
from .test_e2e import run


def test_the_committed_grid_has_every_condition_the_issue_lists() -> None:
    grid = OmegaConf.load(CONF_DIR / "degradations" / "robustness.yaml").degradations
    conditions = grid_conditions(grid)
    names = [c["name"] for c in conditions]
    assert len(names) == len(set(names)) == 4 * 3 * 2 * 2 + 1 + 1 + 2 + 3
    specs = dict(parse_test_lowpass(conditions))
    extra = {"chebyshev_reference", "none"}
    filters = [
        s for n, s in specs.items()
        if n not in extra and s.kind != "resample" and s.codec == "none"
    ]
    assert {(s.kind, s.order, s.cutoff, s.zero_phase) for s in filters} == {
        (f, o, c, z)
        for f in ("chebyshev", "butterworth", "bessel", "elliptic")
        for o in (3, 6, 9)
        for c in (0.8, 1.0)
        for z in (False, True)
    }
    assert specs["none"].kind == "none"
    assert specs["chebyshev_reference"] == parse_test_lowpass(["chebyshev"])[0][1]
    assert sum(s.kind == "resample" for s in specs.values()) == 2
    assert sorted(s.bitrate_kbps for s in specs.values() if s.codec == "mp3") == [16, 32, 64]
    assert grid.files == 48


def test_a_bad_grid_is_one_line_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match="unknown key"):
        grid_conditions({"familes": ["chebyshev"]})
    with pytest.raises(ConfigError, match="degradations.extra"):
        grid_conditions({"extra": [{"kind": "none"}]})
    with pytest.raises(ConfigError, match="unknown lowpass kind"):
        grid_conditions({"families": ["chebychev"], "orders": [3], "cutoffs": [1.0],
                         "zero_phase": [True]})


@pytest.mark.slow
def test_grid_csv_summary_and_heatmaps_from_a_tiny_checkpoint(tiny_corpus, tiny_ckpt, tmp_path):
    out = tmp_path / "eval"
    proc = run(
        [
            str(REPO / "evaluate.py"),
            f"ckpt_path={tiny_ckpt}",
            "degradations=robustness",
            # a small grid of the committed config: 2 filters and 3 further conditions
            "degradations.families=[chebyshev]",
            "degradations.orders=[3]",
            "degradations.cutoffs=[1.0]",
            "degradations.extra=[{name:none,kind:none},"
            "{name:resample_torchaudio,kind:resample,resampler:sinc_hann,cutoff:0.99},"
            "{name:mp3_32kbps,kind:chebyshev,codec:mp3,bitrate_kbps:32}]",
            "degradations.files=1",
            "data=folder",
            f"data.root={tiny_corpus}",
            "data.test_speakers=[spk2]",
            f"data.cache_dir={tmp_path / 'cache'}",
            "logger=wandb",
            f"hydra.run.dir={out}",
        ],
        cwd=tmp_path,
        env={"WANDB_MODE": "offline", "HOME": str(tmp_path)},
    )
    assert "5 conditions x 1 held-out files" in proc.stdout
    assert "about" in proc.stdout and "min for the 5 conditions" in proc.stdout  # the cost
    rows = list(csv.DictReader((out / "robustness.csv").open()))
    assert list(rows[0]) == list(ROBUSTNESS_COLUMNS)
    assert [r["condition"] for r in rows] == [
        "chebyshev_o3_c1_1p", "chebyshev_o3_c1_zp", "none", "resample_torchaudio", "mp3_32kbps",
    ]
    for r in rows:
        assert r["n_files"] == "1"
        assert float(r["snr_gain"]) == pytest.approx(
            float(r["model_snr"]) - float(r["cubic_snr"]), abs=1e-4
        )
        assert float(r["lsd_gain"]) == pytest.approx(
            float(r["cubic_lsd"]) - float(r["model_lsd"]), abs=1e-4
        )
    # every condition made a different input: cubic's scores differ
    assert len({round(float(r["cubic_snr"]), 4) for r in rows}) == 5
    # the same scores as the mismatch table the shared machinery writes
    mismatch = {r["test_lowpass"]: r for r in csv.DictReader((out / "mismatch.csv").open())}
    for r in rows:
        assert float(mismatch[r["condition"]]["model_lsd_hf"]) == pytest.approx(
            float(r["model_lsd_hf"]), rel=1e-5
        )
    worst = min(rows, key=lambda r: float(r["snr_gain"]))
    md = (out / "summary.md").read_text()
    assert f"**worst** {float(worst['snr_gain']):+.2f} | {worst['condition']}" in md
    assert "**mean** | 5 conditions" in md and "degradations=robustness" in md
    assert str(tiny_corpus) in md
    for name in ("robustness_snr_gain.png", "robustness_lsd.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["by_lowpass"]) == [r["condition"] for r in rows]
    # the same to W&B: the table, both heatmaps and the worst/mean gains on the run
    (wandb_run,) = (out / "wandb").glob("offline-run-*")
    media = wandb_run / "files" / "media"
    assert len(list((media / "images" / "robustness").glob("robustness_*.png"))) == 2
    table = next((media / "table" / "robustness").glob("table*.table.json"))
    assert [r[0] for r in json.loads(table.read_text())["data"]] == [r["condition"] for r in rows]
    assert b"robustness/worst_snr_gain" in next(wandb_run.glob("run-*.wandb")).read_bytes()
    assert metrics["by_lowpass"]["mp3_32kbps"]["lowpass_spec"]["codec"] == "mp3"


@pytest.mark.slow
def test_degradations_and_test_lowpass_together_is_one_line(tiny_corpus, tiny_ckpt, tmp_path):
    proc = run(
        [str(REPO / "evaluate.py"), f"ckpt_path={tiny_ckpt}", "degradations=robustness",
         "test_lowpass=[none]", "data=folder", f"data.root={tiny_corpus}",
         "data.test_speakers=[spk2]", f"data.cache_dir={tmp_path / 'cache'}",
         f"hydra.run.dir={tmp_path / 'eval'}"],
        cwd=tmp_path,
        succeed=False,
    )
    assert "test_lowpass= and degradations= were both given" in proc.stderr


def test_experiment_demo_robust_is_demo_with_the_robust_degradations(tmp_path) -> None:
    """demo_robust = make demo's U-Net and data, lowpass=robust, 1500 steps; its documented
    Chebyshev-only twin differs in the filter alone."""
    from .test_configs import compose_train

    robust = OmegaConf.to_container(compose_train(["experiment=demo_robust"], tmp_path))
    demo = OmegaConf.to_container(compose_train(["experiment=demo"], tmp_path))
    twin = OmegaConf.to_container(
        compose_train(["experiment=demo_robust", "lowpass=chebyshev"], tmp_path)
    )
    expected = OmegaConf.to_container(compose_train(["lowpass=robust"], tmp_path))["lowpass"]
    assert robust["lowpass"] == expected and robust["lowpass"]["p_codec"] > 0
    assert twin["lowpass"] == demo["lowpass"]
    for key in ("model", "loss", "data", "optimizer", "ratio", "sample_rate"):
        assert robust[key] == demo[key] == twin[key], key
    assert robust["trainer"]["max_steps"] == twin["trainer"]["max_steps"] == 1500
