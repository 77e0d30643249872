"""Every benchmark figure runs at tiny sizes and prints JSON lines with its keys and finite ratios.

Only the output format and the wiring are checked; timings are never compared to anything.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from audio_superres import bench


def _records(capsys: pytest.CaptureFixture[str]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for line in capsys.readouterr().out.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            out.setdefault(record["figure"], []).append(record)
    return out


def _finite_positive(record: dict, *keys: str) -> None:
    for key in keys:
        assert math.isfinite(record[key]) and record[key] > 0, (key, record)


def test_peak_model_loader_figures(tmp_path: Path, tiny_corpus: Path, capsys) -> None:
    args = ["peak", "model", "loader", "--quick", "--models", "audiounet_small",
            "--precision", "32", "--batch-size", "1", "--patch-len", "1024",
            "--loader-batches", "3", "--spec-peak-tflops", "1",
            "--data-root", str(tiny_corpus), "--cache-dir", str(tmp_path / "cache")]
    assert bench.main(args) == 0
    rec = _records(capsys)
    peak = rec["machine_peak"][0]
    _finite_positive(peak, "matmul_fp32_gflops", "conv1d_forward_fp32_gflops",
                     "conv1d_train_fp32_gflops", "conv1d_train_vs_forward_fp32")
    for mode in ("forward", "train"):
        by_shape = peak[f"conv1d_{mode}_fp32_by_shape"]
        assert peak[f"conv1d_{mode}_fp32_gflops"] == max(by_shape.values())
        assert peak[f"conv1d_{mode}_fp32_best_shape"] in by_shape
    assert set(peak["conv1d_train_fp32_by_shape"]) == set(peak["conv1d_forward_fp32_by_shape"])
    # training is measured against the training peak, inference against the forward peak
    for figure, mode in (("train_throughput", "train"), ("infer_throughput", "forward")):
        (r,) = rec[figure]
        assert r["model"] == "audiounet_small" and r["batch_size"] == 1 and r["patch_len"] == 1024
        _finite_positive(r, "audio_s_per_s", "achieved_gflops", f"ratio_to_conv1d_{mode}_peak",
                         "mfu")
        assert r["mfu"] == pytest.approx(r["achieved_gflops"] / 1000, abs=1e-4)
        assert r[f"peak_conv1d_{mode}_gflops"] == peak[f"conv1d_{mode}_fp32_gflops"]
        assert r[f"ratio_to_conv1d_{mode}_peak"] == pytest.approx(
            r["achieved_gflops"] / r[f"peak_conv1d_{mode}_gflops"], rel=0.05, abs=2e-3)
        other = "forward" if mode == "train" else "train"
        assert f"ratio_to_conv1d_{other}_peak" not in r
        # the FLOP count comes from the layers, not a constant
        assert r["forward_gflop_per_audio_s"] == pytest.approx(
            bench.forward_gflop_per_audio_second("audiounet_small"), rel=1e-3)
    train = rec["train_throughput"][0]
    assert train["achieved_gflops"] == pytest.approx(
        3 * train["forward_gflop_per_audio_s"] * train["audio_s_per_s"], rel=0.02)
    (loader,) = rec["loader"]
    assert loader["batches"] == 3 and loader["num_workers"] == 0
    _finite_positive(loader, "batches_per_s")
    (ratio,) = rec["loader_vs_train"]
    _finite_positive(ratio, "ratio")


def test_model_section_counts_a_model_whose_ops_lack_meta_kernels(capsys) -> None:
    """AP-BWE's iSTFT has no meta kernel: its FLOPs are counted on the CPU instead, and equal
    what `python -m audio_superres.models.summary` prints for it."""
    from audio_superres.bench.core import build_model
    from audio_superres.models.summary import counted_summary, model_summary

    gflop = bench.forward_gflop_per_audio_second("apbwe_small")
    direct = model_summary(build_model("apbwe_small", 4, "cpu"), 4, 16000)
    assert gflop == pytest.approx(direct["gflop_per_second"], rel=1e-6) and gflop > 0
    assert counted_summary(lambda d: build_model("apbwe_small", 4, d), 4, 16000) == direct
    assert bench.main(["model", "--quick", "--models", "apbwe_small", "--batch-size", "1",
                       "--patch-len", "1024"]) == 0
    rec = _records(capsys)
    for figure in ("train_throughput", "infer_throughput"):
        (r,) = rec[figure]
        assert r["model"] == "apbwe_small"
        _finite_positive(r, "audio_s_per_s", "achieved_gflops", "forward_gflop_per_audio_s")


def test_inference_and_prepare_figures(tmp_path: Path, capsys) -> None:
    args = ["infer", "prepare", "--quick", "--infer-seconds", "0.5", "2",
            "--prepare-hours", "0.0005", "--prepare-workers", "1"]
    assert bench.main(args) == 0
    rec = _records(capsys)
    (rtf,) = rec["inference_rtf"]
    _finite_positive(rtf, "whole_realtime_factor", "chunked_realtime_factor",
                     "chunked_vs_whole_ratio")
    (mem,) = rec["inference_memory"]
    assert (mem["short_s"], mem["long_s"]) == (0.5, 2)
    _finite_positive(mem, "short_peak_rss_mib", "long_peak_rss_mib", "long_vs_short_peak_ratio")
    (prep,) = rec["prepare"]
    assert prep["files"] >= 1 and prep["workers"] == 1
    _finite_positive(prep, "hours_per_minute", "realtime_factor")


def test_bf16_figures_beside_float32_each_against_its_own_peak(capsys) -> None:
    """`--precision 32 bf16`: the peak in both (matmul, Linear, conv1d) with bf16/fp32 ratios,
    and each model figure against the peak of the precision it ran in."""
    args = ["peak", "model", "--quick", "--models", "audiounet_small", "--precision", "32",
            "bf16", "--batch-size", "1", "--patch-len", "1024", "--device", "cpu"]
    assert bench.main(args) == 0
    rec = _records(capsys)
    peak = rec["machine_peak"][0]
    for tag in ("fp32", "bf16"):
        _finite_positive(peak, f"matmul_{tag}_gflops", f"linear_{tag}_gflops",
                         f"conv1d_forward_{tag}_gflops", f"conv1d_train_{tag}_gflops")
        assert peak[f"linear_{tag}_gflops"] == max(peak[f"linear_{tag}_by_shape"].values())
    _finite_positive(peak, "matmul_bf16_vs_fp32", "linear_bf16_vs_fp32",
                     "conv1d_forward_bf16_vs_fp32", "conv1d_train_bf16_vs_fp32")
    assert "cpu_bf16_units" in peak
    for figure, mode in (("train_throughput", "train"), ("infer_throughput", "forward")):
        by_precision = {r["precision"]: r for r in rec[figure]}
        assert set(by_precision) == {"32", "bf16"}
        for precision, tag in (("32", "fp32"), ("bf16", "bf16")):
            r = by_precision[precision]
            assert r[f"peak_conv1d_{mode}_gflops"] == peak[f"conv1d_{mode}_{tag}_gflops"]


def test_auto_precision_is_resolved_as_train_py_resolves_it(monkeypatch) -> None:
    from audio_superres import precision
    from audio_superres.bench import core

    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_bf16_units", lambda: None)
    assert core.precisions_of(["auto"], cpu) == ["32"]
    assert [t for t, _ in core.peak_dtypes(cpu, ["32"])] == ["fp32"]
    monkeypatch.setattr(precision, "cpu_bf16_units", lambda: "AMX-BF16")
    assert core.precisions_of(["auto", "bf16", "32"], cpu) == ["bf16", "32"]
    assert [t for t, _ in core.peak_dtypes(cpu, ["32"])] == ["fp32", "bf16"]


def test_unknown_figures_and_precisions_are_refused(capsys) -> None:
    with pytest.raises(SystemExit):
        bench.main(["peak", "--device", "cpu", "--precision", "fp8"])
    with pytest.raises(SystemExit):
        bench.main(["nonsense"])


def test_training_peak_times_forward_and_both_backward_passes() -> None:
    """The training peak's step computes the gradients of the input and of the weights."""
    conv = torch.nn.Conv1d(4, 6, 5, padding=2)
    x = torch.randn(1, 4, 64)
    from audio_superres.bench import core  # a submodule: imported here, not by an earlier test

    seconds = core.conv1d_seconds(conv, x, torch.device("cpu"), repeats=1, train=True)
    assert seconds > 0
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    assert not x.requires_grad  # the caller's tensor is left alone


def test_stream_and_seams_sections(tiny_corpus: Path, tiny_ckpt: Path, capsys) -> None:
    files = sorted(str(f) for f in tiny_corpus.rglob("*.wav"))[:2]
    args = ["stream", "seams", "--quick", "--device", "cpu", "--ckpt", str(tiny_ckpt),
            "--stream-seconds", "0.5", "1", "--files", *files, "--chunk", "1024",
            "--overlap", "128"]
    assert bench.main(args) == 0
    rec = _records(capsys)
    assert [r["seconds_audio"] for r in rec["stream_memory"]] == [0.5, 1]
    for r in rec["stream_memory"]:
        _finite_positive(r, "peak_host_MiB", "realtime_factor", "ms_per_audio_s")
    assert [r["file"] for r in rec["inference_seams"]] == files
    for r in rec["inference_seams"]:
        assert math.isfinite(r["chunked_vs_whole_snr_db"])


@pytest.mark.slow
def test_upsample_section_runs_upsample_py_per_kind(tiny_corpus: Path, tiny_ckpt: Path,
                                                    tmp_path: Path, capsys) -> None:
    speech = [str(next(tiny_corpus.rglob("*.wav")))]
    args = ["upsample", "--quick", "--ckpt", str(tiny_ckpt), "--upsample-kinds", "lr",
            "--upsample-seconds", "0.5", "1", "--speech", *speech, "--workdir", str(tmp_path)]
    assert bench.main(args) == 0
    rec = _records(capsys)
    runs = rec["upsample_rss"]
    assert [(r["kind"], r["seconds_audio"], r["input_rate"]) for r in runs] == [
        ("lr", 0.5, 4000), ("lr", 1, 4000)]
    for r in runs:
        _finite_positive(r, "peak_rss_MiB", "wall_s")
    (ratio,) = rec["upsample_rss_ratio"]
    assert (ratio["kind"], ratio["short_s"], ratio["long_s"]) == ("lr", 0.5, 1)
    _finite_positive(ratio, "rss_ratio")


def test_cache_section_prepares_a_folder_corpus(tiny_corpus: Path, tmp_path: Path,
                                                capsys) -> None:
    args = ["cache", "--corpus-root", str(tiny_corpus), "--cache-dir", str(tmp_path / "cache"),
            "--sample-rate", "8000", "--prepare-workers", "1"]
    assert bench.main(args) == 0
    (r,) = _records(capsys)["cache_prepare"]
    assert (r["files"], r["sample_rate"], r["workers"]) == (6, 8000, 1)
    assert r["hours_audio"] == pytest.approx(6 * 1.5 / 3600, abs=1e-4)
    assert Path(r["cache"]).is_dir() and Path(r["cache"]).parent == tmp_path / "cache"
    _finite_positive(r, "hours_per_minute", "peak_rss_mib_main")


def test_sections_that_need_inputs_say_so(capsys) -> None:
    with pytest.raises(SystemExit):
        bench.main(["upsample"])
    assert "upsample needs --ckpt" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["cache"])
    assert "cache needs --corpus-root" in capsys.readouterr().err


def test_step_section_times_each_experiments_own_step_and_profiles_it(capsys) -> None:
    """`bench step`: the experiment's module as train.py builds it (its loss, filter and
    optimiser), one figure per experiment and precision, and the profiler's table when asked."""
    assert bench.main(["step", "--quick", "--experiment", "demo_apbwe", "demo",
                       "--precision", "32", "bf16", "--profile", "5"]) == 0
    out = capsys.readouterr().out
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [(r["experiment"], r["precision"]) for r in records] == [
        ("demo_apbwe", "32"), ("demo_apbwe", "bf16"), ("demo", "32"), ("demo", "bf16")]
    for r in records:
        assert r["figure"] == "training_step" and r["batch_size"] == 2 and r["patch_len"] == 2048
        _finite_positive(r, "step_s", "steps_per_s")
    assert records[0]["loss"].endswith("APBWELoss") and records[2]["loss"].endswith("RMSELoss")
    assert out.count("Self CPU time total") == 4  # one profile table per figure
    with pytest.raises(SystemExit, match="adversarially"):
        bench.main(["step", "--quick", "--experiment", "speech_r4_adversarial"])
