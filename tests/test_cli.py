"""The `audio-superres` console command: its subcommands, its one-line errors, its entry point."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import soundfile as sf
import torch

from audio_superres.cli import main

from .conftest import REPO, TINY_UNET, voiced_signal
from .test_resolver import ckpt  # noqa: F401 - the fixture


def cli(*args: str) -> subprocess.CompletedProcess:
    """`python -m audio_superres.cli ARGS` (what the installed `audio-superres` runs)."""
    return subprocess.run(
        [sys.executable, "-m", "audio_superres.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )


def test_the_command_is_installed_with_the_package():
    text = (REPO / "pyproject.toml").read_text()  # (tomllib is Python 3.11+; 3.10 is supported)
    assert text.count("[project.scripts]") == 1
    section = text.split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    assert 'audio-superres = "audio_superres.cli:main"' in section.splitlines()


def test_upsample_files_and_folders_into_one_output(ckpt, tmp_path):  # noqa: F811
    rng = np.random.default_rng(0)
    (tmp_path / "in" / "sub").mkdir(parents=True)
    sf.write(tmp_path / "in" / "sub" / "a.wav", voiced_signal(rng, 0.4, 4000), 4000)
    sf.write(tmp_path / "one.flac", voiced_signal(rng, 0.3, 8000), 8000)  # another rate
    sf.write(tmp_path / "in" / "bad.wav", np.zeros(0), 4000)  # empty: skipped and listed
    out = tmp_path / "out"
    proc = cli("upsample", str(tmp_path / "in"), str(tmp_path / "one.flac"), "-o", str(out),
               "--ckpt", str(ckpt), "--device", "cpu", "--precision", "32", "--report")  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "failed.csv: 1 of 3 file(s)" in errors[0], proc.stderr
    assert "bad.wav" in (out / "failed.csv").read_text()
    y, rate = sf.read(out / "in" / "sub" / "a.wav")
    assert rate == 16000 and len(y) == 1600 * 4
    assert sf.info(str(out / "one.wav")).samplerate == 16000
    assert "resampling it first" in proc.stderr
    assert (out / "report" / "index.html").is_file()
    assert proc.stdout.strip() == str(out)


def test_upsample_one_file_in_process(ckpt, tmp_path, capsys):  # noqa: F811
    src = tmp_path / "x.wav"
    sf.write(src, voiced_signal(np.random.default_rng(1), 0.5, 4000), 4000, subtype="FLOAT")
    rc = main(["upsample", str(src), "-o", str(tmp_path / "o"), "--ckpt", str(ckpt),
               "--device", "cpu", "--precision", "32", "--format", "flac", "--quiet"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    assert sf.info(str(tmp_path / "o" / "x.flac")).samplerate == 16000
    # never over an input
    rc = main(["upsample", str(src), "-o", str(tmp_path), "--ckpt", str(ckpt), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and err[-1].startswith(f"Error: {src}: its output") and len(err) == 1


def test_models_and_info(ckpt):  # noqa: F811
    proc = cli("models")
    assert proc.returncode == 0 and "speech-r4 (the default): speech" in proc.stdout
    assert "input: audio at 4000 Hz" in proc.stdout and "output: 16000 Hz (4x)" in proc.stdout
    proc = cli("info", str(ckpt))
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "audio_superres.models.audiounet.AudioUNet" in text
    n = sum(p.numel() for p in torch.nn.Module.parameters(_unet()))
    assert f"{n:,} parameters" in text
    parts = (
        "ratio: 4 (4000 Hz in -> 16000 Hz out)",
        "training filter: chebyshev",
        "steps: 7",
        "objective: audio_superres.objectives.RegressionObjective",
    )
    for part in parts:
        assert part in text, text


def _unet() -> torch.nn.Module:
    from audio_superres.models import AudioUNet

    return AudioUNet(**{k: v for k, v in TINY_UNET.items() if k != "_target_"})


def test_errors_are_one_line_naming_the_file(ckpt, tmp_path):  # noqa: F811
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    audio = tmp_path / "a.wav"
    sf.write(audio, np.zeros(800, dtype=np.float32), 4000)
    cases = [
        (["info", str(tmp_path / "nope.ckpt")], f"{tmp_path / 'nope.ckpt'}: checkpoint not found"),
        (["info", str(garbage)], f"{garbage}: not a readable checkpoint"),
        (["upsample", str(tmp_path / "missing.wav"), "-o", str(tmp_path / "o"), "--ckpt",
          str(ckpt)], f"{tmp_path / 'missing.wav'}: input not found"),  # fmt: skip
        (["upsample", str(audio), "-o", str(tmp_path / "o"), "--model", "speech-r9"],
         "speech-r9: no bundled model of that name (available: speech-r4)"),  # fmt: skip
        (["upsample", str(audio), "-o", str(tmp_path / "o"), "--ckpt", str(garbage)],
         f"{garbage}: not a readable checkpoint"),  # fmt: skip
    ]
    for args, message in cases:
        proc = cli(*args)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1, (args, proc.stderr)
        assert len(lines) == 1 and lines[0].startswith(f"Error: {message}"), (args, proc.stderr)
        assert "Traceback" not in proc.stderr
    proc = cli("upsample", str(audio))  # no -o: argparse's usage error
    assert proc.returncode == 2 and "-o/--output" in proc.stderr


def test_without_a_bundled_model_the_command_asks_for_a_checkpoint(tmp_path, monkeypatch, capsys):
    from audio_superres import pretrained

    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", tmp_path / "none")
    audio = tmp_path / "a.wav"
    sf.write(audio, np.zeros(800, dtype=np.float32), 4000)
    assert main(["upsample", str(audio), "-o", str(tmp_path / "o")]) == 1
    assert capsys.readouterr().err.startswith("Error: pass --ckpt PATH (no model is bundled")
    assert main(["models"]) == 0 and "No model is bundled" in capsys.readouterr().out
