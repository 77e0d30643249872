"""evaluate.py input_conditioning (issue 20, item 6): every test input reaches the model as
upsample.py's default inference would bring a low-res file to it (the same decision, the same
re-filter: `dsp.bandwidth.condition_lowres`); off (the default) scores inputs as made."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

from audio_superres.dsp.bandwidth import (
    condition_lowres,
    conditioning_check,
    measure_reader,
    measure_signal,
    refilter,
)
from audio_superres.dsp.lowpass import as_lowpass_spec, make_lowres
from audio_superres.errors import ConfigError
from audio_superres.resolver import ArrayReader, SuperResolver
from audio_superres.tasks.evaluate import evaluate

from .conftest import CONF_DIR, voiced_signal, write_tiny_checkpoint


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    """An untrained Chebyshev checkpoint whose net, not only its upsampled input, shapes the
    output (so a re-filtered input changes the scores)."""
    return write_tiny_checkpoint(tmp_path / "model.ckpt", final_std=0.3)


def lowres_inputs(seconds: float = 1.5) -> dict[str, torch.Tensor]:
    """Low-res inputs `(1, m)` at 4 kHz of one speech-like signal: matched and aliased."""
    hr = torch.from_numpy(voiced_signal(np.random.default_rng(1), seconds, 16000))[None].float()
    return {
        "matched": make_lowres(hr, 4, "chebyshev"),
        "aliased": make_lowres(hr, 4, "none"),
    }


def test_measure_signal_is_measure_reader_bit_for_bit() -> None:
    x = torch.from_numpy(voiced_signal(np.random.default_rng(2), 40.0, 4000)).float()  # 2+ blocks
    assert x.numel() > 2 * (1 << 16)
    streamed = measure_reader(ArrayReader(x[None].numpy(), 4000), 4000)
    in_memory = measure_signal(x, 4000)
    assert np.array_equal(streamed.power, in_memory.power)
    assert streamed.frames == in_memory.frames


def test_in_memory_conditioning_decides_and_filters_as_the_resolver(ckpt) -> None:
    """The same samples: SuperResolver's decision (streamed measurement) equals
    condition_lowres's, and the resolver's output equals the model on condition_lowres's input."""
    auto = SuperResolver.from_checkpoint(ckpt, device="cpu", precision="32")
    off = SuperResolver.from_checkpoint(ckpt, device="cpu", precision="32",
                                        input_conditioning="off")  # fmt: skip
    for mode in ("auto", "always"):
        auto.input_conditioning = mode
        for name, lr in lowres_inputs().items():
            x = lr.numpy()
            _, check = auto.condition(
                ArrayReader(x, 4000), lambda x=x: measure_reader(ArrayReader(x, 4000), 4000)
            )
            conditioned, (mine,) = condition_lowres(lr, "chebyshev", 4, 4000, mode)
            assert mine is not None and check is not None
            assert (mine.refilter, mine.excess_db, mine.bandwidth_hz, mine.reason) == (
                check.refilter, check.excess_db, check.bandwidth_hz, check.reason,
            ), (name, mode)  # fmt: skip
            expect_refilter = mode == "always" or name == "aliased"
            assert mine.refilter == expect_refilter, (name, mode, mine.summary())
            if not mine.refilter:
                assert conditioned is lr  # untouched: bit for bit what off gives
            else:  # the filter RefilteredReader applies, whole-signal
                assert torch.equal(conditioned, refilter(lr.double(), "chebyshev").float())
            y_resolver, _ = auto.sr(lr[0], 4000)
            y_memory, _ = off.sr(conditioned[0], 4000)
            if not mine.refilter:
                assert torch.equal(y_resolver, y_memory)
            else:  # block-wise and whole-signal re-filter: equal to float32 rounding
                torch.testing.assert_close(y_resolver, y_memory, atol=1e-5, rtol=0)
    assert conditioning_check(measure_signal(lr, 4000), "chebyshev", 4, "off") is None


def test_matched_input_made_by_training_is_never_refiltered_when_matched() -> None:
    lr = lowres_inputs()["aliased"]
    spectrum = measure_signal(lr, 4000)
    assert conditioning_check(spectrum, "chebyshev", 4, "auto").refilter
    assert not conditioning_check(spectrum, "chebyshev", 4, "auto", matched=True).refilter
    assert conditioning_check(spectrum, "chebyshev", 4, "always", matched=True).refilter


def test_a_robust_checkpoint_is_never_refiltered() -> None:
    """lowpass=robust (experiment=demo_robust) draws cutoffs up to 1.0: its training input kept
    the top band, so auto and always leave every input as made (its grid equals off's)."""
    robust = {"kind": "random", "p_none": 0.15, "p_resample": 0.25, "p_one_pass": 0.3,
              "p_codec": 0.2}  # conf/lowpass/robust.yaml  # fmt: skip
    assert as_lowpass_spec(robust).cutoff_range[1] == 1.0
    for lr in lowres_inputs().values():
        for mode in ("auto", "always"):
            conditioned, (check,) = condition_lowres(lr, robust, 4, 4000, mode)
            assert conditioned is lr and not check.refilter and check.top_band is None


def eval_cfg(overrides: list[str], out: Path, tmp_path: Path) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("evaluate", overrides=overrides)
    GlobalHydra.instance().clear()
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
        cfg.paths.data_dir = str(tmp_path / "data")
    return cfg


def common(ckpt: Path, corpus: Path, tmp_path: Path) -> list[str]:
    return [
        f"ckpt_path={ckpt}",
        "data=folder",
        f"data.root={corpus}",
        "data.test_speakers=[spk2]",
        f"data.cache_dir={tmp_path / 'cache'}",
        "data.prepare_workers=1",
        "perceptual_metrics=false",
        "device=cpu",
        "precision=32",
        "n_examples=0",
    ]


def run_eval(ckpt, corpus, tmp_path, name: str, extra: list[str]) -> dict:
    out = tmp_path / name
    evaluate(eval_cfg([*common(ckpt, corpus, tmp_path), *extra], out, tmp_path))
    return json.loads((out / "metrics.json").read_text())


def test_evaluate_auto_leaves_matched_input_and_refilters_aliased(ckpt, tiny_corpus, tmp_path):
    filters = ["test_lowpass=[chebyshev,none]"]
    off = run_eval(ckpt, tiny_corpus, tmp_path, "off", filters)
    auto = run_eval(ckpt, tiny_corpus, tmp_path, "auto", [*filters, "input_conditioning=auto"])
    assert off["input_conditioning"] == "off" and auto["input_conditioning"] == "auto"
    assert "conditioning" not in off["by_lowpass"]["chebyshev"]
    matched, aliased = auto["by_lowpass"]["chebyshev"], auto["by_lowpass"]["none"]
    assert matched["conditioning"]["n_refiltered"] == 0 and matched["n_files"] == 2
    assert aliased["conditioning"]["n_refiltered"] == 2
    # matched: not re-filtered, scores exactly as off; aliased: the model's scores change
    assert matched["model"] == off["by_lowpass"]["chebyshev"]["model"]
    assert aliased["model"]["snr"] != off["by_lowpass"]["none"]["model"]["snr"]
    assert aliased["model"]["lsd"] != off["by_lowpass"]["none"]["model"]["lsd"]
    for name in ("chebyshev", "none"):  # cubic gets the input as made either way
        assert auto["by_lowpass"][name]["cubic"] == off["by_lowpass"][name]["cubic"]
    rows = list(csv.DictReader((tmp_path / "auto" / "per_file.csv").open()))
    assert [r["refiltered"] for r in rows] == ["False", "False"]
    assert all(r["input_conditioning"] == "auto" and r["top_band_excess_db"] for r in rows)
    assert "refiltered" not in next(csv.DictReader((tmp_path / "off" / "per_file.csv").open()))

    # the plain test (the training filter): the same scores as off
    plain = run_eval(ckpt, tiny_corpus, tmp_path, "plain", ["input_conditioning=auto"])
    assert plain["model"] == off["by_lowpass"]["chebyshev"]["model"]
    assert plain["conditioning"]["n_refiltered"] == 0


def test_robustness_grid_records_conditioning_per_condition(ckpt, tiny_corpus, tmp_path):
    grid = [
        "degradations=robustness",
        "degradations.families=[]",
        "degradations.extra=[{name:chebyshev_reference,kind:chebyshev},{name:none,kind:none}]",
        "degradations.files=1",
    ]
    run_eval(ckpt, tiny_corpus, tmp_path, "grid_off", grid)
    run_eval(ckpt, tiny_corpus, tmp_path, "grid", [*grid, "input_conditioning=always"])
    auto = run_eval(ckpt, tiny_corpus, tmp_path, "grid_auto", [*grid, "input_conditioning=auto"])
    assert auto["by_lowpass"]["none"]["conditioning"]["n_refiltered"] == 1

    def table(name: str) -> dict[str, dict[str, str]]:
        path = tmp_path / name / "robustness.csv"
        return {r["condition"]: r for r in csv.DictReader(path.open())}

    off, always, auto_rows = table("grid_off"), table("grid"), table("grid_auto")
    refiltered = {
        name: [(r["input_conditioning"], r["n_refiltered"]) for r in rows.values()]
        for name, rows in (("off", off), ("always", always), ("auto", auto_rows))
    }
    assert refiltered == {
        "off": [("off", "0")] * 2,
        "always": [("always", "1")] * 2,
        "auto": [("auto", "0"), ("auto", "1")],  # chebyshev_reference, none
    }
    assert auto_rows["chebyshev_reference"]["model_snr"] == off["chebyshev_reference"]["model_snr"]
    assert auto_rows["none"]["model_snr"] != off["none"]["model_snr"]
    assert auto_rows["none"]["cubic_snr"] == off["none"]["cubic_snr"]
    md = (tmp_path / "grid_auto" / "summary.md").read_text()
    assert "input conditioning: `auto`" in md and "1 of 2 file scorings re-filtered" in md
    assert "| none |" in md and " 1 of 1 |" in md
    assert "input conditioning: `off`" in (tmp_path / "grid_off" / "summary.md").read_text()


def test_conditioning_needs_a_checkpoint_and_a_known_mode(ckpt, tiny_corpus, tmp_path):
    args = common(ckpt, tiny_corpus, tmp_path)
    with pytest.raises(ConfigError, match="input_conditioning must be one of auto, off, always"):
        evaluate(eval_cfg([*args, "input_conditioning=sometimes"], tmp_path / "e1", tmp_path))
    cubic = [a for a in args if not a.startswith("ckpt_path=")]
    cubic += ["model=cubic", "ratio=4", "sample_rate=16000", "input_conditioning=auto"]
    with pytest.raises(ConfigError, match="pass ckpt_path"):
        evaluate(eval_cfg(cubic, tmp_path / "e2", tmp_path))


def test_evaluate_defaults_to_off() -> None:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        assert compose("evaluate").input_conditioning == "off"
    GlobalHydra.instance().clear()
