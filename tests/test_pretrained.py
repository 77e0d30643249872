"""Bundled / exported models (`pretrained.py`, `export.py`): safetensors weights + a JSON model
card, loaded through the same allow-list and checks as a checkpoint, giving the checkpoint's
output bit for bit; `audio-superres export`; `init_from=` (issue 21 item 3)."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audio_superres import SuperResolver, export, pretrained
from audio_superres.checkpoint import CheckpointError
from audio_superres.cli import main as cli_main
from audio_superres.cli import model_lines
from audio_superres.errors import ConfigError
from audio_superres.inference import InferenceSettings
from audio_superres.module import SuperResolutionModule
from audio_superres.tasks.train import initialize_generator

from .conftest import REPO, TINY_UNET, voiced_signal, write_tiny_checkpoint

SMALL = InferenceSettings(chunk=1024, overlap=256, batch_size=4, precision="32")


def write_ckpt(path: Path) -> Path:
    """A tiny checkpoint (`conftest.write_tiny_checkpoint`) inside a run folder
    (`RUN/checkpoints/`, with the run's `.hydra/overrides.yaml` and a timestamped log)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_tiny_checkpoint(path, final_std=0.05, global_step=11)
    hydra = path.parent.parent / ".hydra"
    hydra.mkdir(exist_ok=True)
    (hydra / "overrides.yaml").write_text("- experiment=demo\n- seed=3\n")
    (path.parent.parent / "train.log").write_text(
        "[2026-12-05 06:00:00,000][x][INFO] - start\n[2026-12-05 06:02:30,500][x][INFO] - end\n"
    )
    return path


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    return write_ckpt(tmp_path / "run" / "checkpoints" / "best.ckpt")


@pytest.fixture
def exported(ckpt: Path, tmp_path: Path) -> Path:
    return export.export_bundled(ckpt, "tiny", tmp_path / "models", {"description": "a test"})


def test_export_writes_generator_weights_and_a_card_that_loads_to_the_same_output(ckpt, exported):
    card = json.loads(exported.read_text())
    assert card["name"] == "tiny" and card["ratio"] == 4 and card["sample_rate"] == 16000
    assert card["model"] == TINY_UNET and card["training_lowpass"]["kind"] == "chebyshev"
    assert card["description"] == "a test"
    weights = exported.with_suffix(".safetensors")
    assert card["weights"]["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert card["weights"]["bytes"] == weights.stat().st_size
    from safetensors.torch import load_file

    stored = load_file(str(weights))
    generator = torch.load(ckpt, weights_only=True)["state_dict"]
    assert set(stored) == {k[len("model.") :] for k in generator if k.startswith("model.")}
    assert card["weights"]["parameters"] == sum(v.numel() for v in stored.values())

    x = voiced_signal(np.random.default_rng(1), 0.7, 4000)
    a = SuperResolver.from_checkpoint(ckpt, device="cpu", precision="32", settings=SMALL)
    for ref in (exported, weights, str(exported)):
        b = SuperResolver.from_pretrained(ref, device="cpu", precision="32", settings=SMALL)
        assert b.info["card"]["name"] == "tiny" and b.checkpoint == str(exported)
        assert np.array_equal(a.sr(x, 4000)[0], b.sr(x, 4000)[0])


def test_a_bundled_name_resolves_in_the_package_folder(ckpt, tmp_path, monkeypatch):
    folder = tmp_path / "weights"
    export.export_bundled(ckpt, "speech-test", folder, {"description": "d"})
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", folder)
    assert list(pretrained.bundled_models()) == ["speech-test"]
    r = SuperResolver.from_pretrained("speech-test", device="cpu", precision="32")
    assert r.ratio == 4 and r.info["global_step"] is None
    with pytest.raises(ConfigError, match=r"nope: no bundled model .*available: speech-test"):
        SuperResolver.from_pretrained("nope")


def test_tampered_weights_are_refused_by_their_checksum(exported):
    weights = exported.with_suffix(".safetensors")
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"tiny\.safetensors: its SHA-256 differs"):
        SuperResolver.from_pretrained(exported)


def test_missing_weights_and_broken_cards_are_one_line_errors(exported, tmp_path):
    exported.with_suffix(".safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"tiny\.safetensors: the weights of model card"):
        pretrained.load_bundled(exported)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CheckpointError, match=r"bad\.json: not a readable model card"):
        pretrained.load_bundled(bad)
    bad.write_text(json.dumps({"name": "x"}))
    with pytest.raises(CheckpointError, match=r"bad\.json: not a model card \(missing format"):
        pretrained.load_bundled(bad)
    with pytest.raises(CheckpointError, match=r"absent\.json: model card not found"):
        pretrained.load_bundled(tmp_path / "absent.json")


def test_a_card_naming_a_foreign_class_is_refused_before_anything_is_built(exported, tmp_path):
    marker = tmp_path / "ran"
    card = json.loads(exported.read_text())
    card["model"] = {"_target_": "os.system", "command": f"touch {marker}"}
    exported.write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="tiny.json"):
        SuperResolver.from_pretrained(exported)
    assert not marker.exists()


def test_weights_over_the_size_limit_are_refused_and_nothing_is_left(ckpt, tmp_path, monkeypatch):
    monkeypatch.setattr(export, "MAX_BUNDLED_BYTES", 1000)
    (tmp_path / "out").mkdir()
    with pytest.raises(CheckpointError, match=r"MB, over the 0 MB a bundled model may take"):
        export.export_bundled(ckpt, "big", tmp_path / "out")
    assert not list((tmp_path / "out").iterdir())


def write_eval(folder: Path, robustness: bool) -> Path:
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("- ckpt_path=C\n- lowpass=chebyshev\n")
    if robustness:
        rows = [("none", -0.7, 0.1), ("chebyshev_o6", 0.5, 0.2), ("mp3_16kbps", 0.1, -0.1)]
        with open(folder / "robustness.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["condition", "n_files", "snr_gain", "lsd_gain"])
            w.writerows([(c, 5, g, lg) for c, g, lg in rows])
    else:
        metrics = {"model": {"snr": 17.0, "lsd": 1.1}, "cubic": {"snr": 15.5, "lsd": 3.3},
                   "n_files": 5, "ratio": 4, "lowpass": "chebyshev", "other": 1}  # fmt: skip
        (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def test_card_fields_record_training_and_evaluations(ckpt, tmp_path):
    vctk = write_eval(tmp_path / "eval_vctk", robustness=False)
    grid = write_eval(tmp_path / "robust", robustness=True)
    fields = export.model_card_fields(ckpt, [f"vctk={vctk}", f"grid={grid}"], "speech")
    t = fields["training"]
    assert t["command"] == "python train.py experiment=demo seed=3" and t["global_step"] == 11
    assert t["wall_time_s"] == 150.0 and t["objective"].endswith("RegressionObjective")
    v = fields["evaluation"]["vctk"]
    assert v["command"] == "python evaluate.py ckpt_path=C lowpass=chebyshev"
    assert v["model"]["snr"] == 17.0 and v["cubic"]["lsd"] == 3.3 and "other" not in v
    g = fields["evaluation"]["grid"]
    assert (g["worst_condition"], g["worst_snr_gain"], g["n_conditions"]) == ("none", -0.7, 3)
    assert g["mean_snr_gain"] == pytest.approx(-0.1 / 3) and g["lsd_below_cubic"] == 2
    with pytest.raises(ValueError, match="LABEL=DIR"):
        export.model_card_fields(ckpt, [str(vctk)])
    with pytest.raises(CheckpointError, match="neither metrics.json nor robustness.csv"):
        export.model_card_fields(ckpt, [f"x={tmp_path}"])


def test_cli_export_models_info_and_upsample_with_an_exported_model(ckpt, tmp_path, capsys):
    vctk = write_eval(tmp_path / "eval_vctk", robustness=False)
    out = tmp_path / "models"
    args = ["export", str(ckpt), "--name", "tiny", "-o", str(out), "--eval", f"vctk={vctk}"]
    assert cli_main(args) == 0
    card = out / "tiny.json"
    assert json.loads(card.read_text())["evaluation"]["vctk"]["model"]["snr"] == 17.0
    assert cli_main(["info", str(card)]) == 0
    text = capsys.readouterr().out
    assert f"checkpoint: {card}" in text and "ratio: 4 (4000 Hz in -> 16000 Hz out)" in text
    described = model_lines("tiny", json.loads(card.read_text()))
    lines = "\n".join(described)
    assert described[0] == "tiny:" and "4000 Hz" in lines
    assert "vctk: SNR 17.00 dB (cubic 15.50), LSD 1.10 (cubic 3.30)" in lines

    wav = tmp_path / "in.wav"
    sf.write(wav, voiced_signal(np.random.default_rng(2), 0.5, 4000), 4000, subtype="FLOAT")
    assert cli_main(["upsample", str(wav), "-o", str(tmp_path / "o"), "--model", str(card),
                     "--device", "cpu", "--precision", "32", "--quiet"]) == 0  # fmt: skip
    y, rate = sf.read(tmp_path / "o" / "in.wav")
    assert rate == 16000 and len(y) == 8000


def test_initialize_generator_takes_the_generator_weights_only(ckpt, exported):
    for ref in (ckpt, exported):
        torch.manual_seed(99)
        module = SuperResolutionModule(model=TINY_UNET, ratio=4, sample_rate=16000)
        said = initialize_generator(module, str(ref))
        assert str(ref) in said
        stored = torch.load(ckpt, weights_only=True)["state_dict"]
        for k, v in module.model.state_dict().items():
            assert torch.equal(v, stored[f"model.{k}"])
    other = SuperResolutionModule(model={**TINY_UNET, "ratio": 2}, ratio=2, sample_rate=16000)
    with pytest.raises(ConfigError, match=r"init_from=.*trained for ratio 4 at 16000 Hz"):
        initialize_generator(other, str(ckpt))
    wider = SuperResolutionModule(
        model={**TINY_UNET, "filters": [8, 16]}, ratio=4, sample_rate=16000
    )
    with pytest.raises(CheckpointError):
        initialize_generator(wider, str(ckpt))


@pytest.mark.slow
def test_train_py_init_from_starts_from_the_given_weights(tiny_corpus, ckpt, tmp_path):
    from .test_e2e import train_args

    run_dir = tmp_path / "ft"
    args = [a for a in train_args(tiny_corpus, run_dir)
            if not a.startswith(("model.", "trainer.max_steps", "trainer.val"))]  # fmt: skip
    model = ["model.filters=[8,8]", "model.kernels=[9,9]", "model.bottleneck_filters=8"]
    proc = subprocess.run(
        [sys.executable, *args, *model, f"init_from={ckpt}", "trainer.max_steps=1",
         "test_after_fit=false", "optimizer.lr=0"],  # fmt: skip
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"generator initialised from {ckpt} (step 11)" in (run_dir / "train.log").read_text()
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    start = torch.load(ckpt, weights_only=True)["state_dict"]
    for k, v in start.items():
        if k.startswith("model."):
            assert torch.equal(last[k], v), k  # lr 0: still the given weights


def test_ckpt_path_auto_resumes_only_what_exists(tmp_path):
    from audio_superres.tasks.train import resolve_ckpt_path

    assert resolve_ckpt_path("auto", tmp_path) is None
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    last.write_bytes(b"x")
    assert resolve_ckpt_path("auto", tmp_path) == str(last)
