"""Every benchmark figure runs at tiny sizes and prints JSON lines with its keys and finite ratios.

Only the output format and the wiring are checked; timings are never compared to anything.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

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
            "--batch-size", "1", "--patch-len", "1024", "--loader-batches", "3",
            "--spec-peak-tflops", "1",
            "--data-root", str(tiny_corpus), "--cache-dir", str(tmp_path / "cache")]
    assert bench.main(args) == 0
    rec = _records(capsys)
    peak = rec["machine_peak"][0]
    _finite_positive(peak, "matmul_fp32_gflops", "conv1d_fp32_gflops")
    assert peak["conv1d_fp32_gflops"] == max(peak["conv1d_fp32_by_shape"].values())
    for figure in ("train_throughput", "infer_throughput"):
        (r,) = rec[figure]
        assert r["model"] == "audiounet_small" and r["batch_size"] == 1 and r["patch_len"] == 1024
        _finite_positive(r, "audio_s_per_s", "achieved_gflops", "ratio_to_conv1d_peak", "mfu")
        assert r["mfu"] == pytest.approx(r["achieved_gflops"] / 1000, abs=1e-4)
        assert r["peak_conv1d_gflops"] == peak["conv1d_fp32_gflops"]
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


def test_bf16_needs_a_gpu_and_unknown_figures_are_refused(capsys) -> None:
    with pytest.raises(SystemExit):
        bench.main(["peak", "--device", "cpu", "--precision", "bf16"])
    with pytest.raises(SystemExit):
        bench.main(["nonsense"])
