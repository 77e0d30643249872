"""Fault injection for the inference path (upsample.py) and the one-line promises of
docs/reliability.md: what a shell script feeding a thousand files would hit.

Each test states the promise it checks. docs/reliability.md lists every promise with its test.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from omegaconf import OmegaConf

from audio_superres.data.audio_io import AudioFileError, read_audio
from audio_superres.dsp.blockwise import FileReader
from audio_superres.errors import UserFacingError, run_task
from audio_superres.module import SuperResolutionModule
from audio_superres.tasks.upsample import upsample

from .conftest import REPO, voiced_signal
from .conftest import TINY_UNET as MODEL

LR = 4000  # the test checkpoint's low-res rate (16 kHz / 4)


def _save(module: SuperResolutionModule, path: Path, **hp_changes) -> Path:
    hp = {**dict(module.hparams), **hp_changes}
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": hp}, path)
    return path


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    """An untrained tiny U-Net checkpoint, as Lightning writes one (state_dict + hparams)."""
    torch.manual_seed(0)
    return _save(SuperResolutionModule(model=MODEL, ratio=4, sample_rate=16000),
                 tmp_path / "model.ckpt")  # fmt: skip


def _cfg(ckpt: Path, src: Path, dst: Path, **kw):
    base = {
        "ckpt_path": str(ckpt),
        "input": str(src),
        "output": str(dst),
        "ratio": None,
        "sample_rate": None,
        "device": "cpu",
        "progress": False,
        "inference": {"chunk": 512, "overlap": 128, "batch_size": 8},
    }
    return OmegaConf.create({**base, **kw})


def _good(path: Path, seconds: float = 0.2, sr: int = LR, seed: int = 0, channels: int = 1):
    rng = np.random.default_rng(seed)
    x = np.stack([voiced_signal(rng, seconds, sr) for _ in range(channels)], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, sr, subtype="FLOAT" if path.suffix.lower() == ".wav" else None)
    return path


def _write_bad(kind: str, path: Path) -> Path:
    """A file a user's folder may hold that cannot be super-resolved."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "nan":
        x = voiced_signal(np.random.default_rng(0), 0.2, LR)
        x[50] = np.nan
        sf.write(path, x, LR, subtype="FLOAT")
    elif kind == "inf":
        x = voiced_signal(np.random.default_rng(0), 0.2, LR)
        x[50] = np.inf
        sf.write(path, x, LR, subtype="FLOAT")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":  # the header declares 8000 frames, the file holds fewer
        sf.write(path, 0.1 * np.ones(8000, np.float32), LR, subtype="PCM_16")
        data = path.read_bytes()
        path.write_bytes(data[: 44 + 2 * 2652])
    elif kind == "header only":
        sf.write(path, np.zeros((0, 1), np.float32), LR, subtype="FLOAT")
    elif kind == "not audio":
        path.write_text("speaker,text\np225,Please call Stella.\n")
    elif kind == "corrupt":
        path.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(64)))
    else:
        raise ValueError(kind)
    return path


BAD_KINDS = {
    "nan": "contains non-finite samples",
    "inf": "contains non-finite samples",
    "empty": "cannot decode audio",
    "truncated": "truncated file",
    "header only": "contains no audio frames",
    "not audio": "cannot decode audio",
    "corrupt": "cannot decode audio",
}


def _stream_all(path: Path) -> None:
    with FileReader(path) as f:
        while f.read(1000).shape[0]:
            pass


@pytest.mark.parametrize("kind", sorted(BAD_KINDS))
def test_one_reader_gives_the_same_error_on_both_paths(tmp_path: Path, kind: str) -> None:
    """Promise: one reader checks every file the same way. Truncation, non-finite samples, zero
    frames and undecodable files give the same one-line error naming the file from the
    streaming path (upsample.py's FileReader) as from the dataset path (read_audio)."""
    path = _write_bad(kind, tmp_path / "x.wav")
    with pytest.raises(AudioFileError) as dataset:
        read_audio(path)
    with pytest.raises(AudioFileError) as streaming:
        _stream_all(path)
    assert str(dataset.value) == str(streaming.value)
    assert str(dataset.value).startswith(f"{path}: {BAD_KINDS[kind]}")
    assert "\n" not in str(dataset.value)
    from audio_superres.data import audio_io

    assert FileReader is audio_io.AudioReader  # one class, not two that agree today


def test_frames_missing_behind_the_header_are_truncation_on_both_paths(tmp_path, monkeypatch):
    """Promise: a file that yields fewer frames than its header declares (a format whose header
    libsndfile cannot cross-check) is 'truncated', never shorter output without a word."""
    path = _good(tmp_path / "x.wav")
    real_read = sf.SoundFile.read

    def short_read(self, frames=-1, *args, **kwargs):
        return real_read(self, frames, *args, **kwargs)[:-5]

    monkeypatch.setattr(sf.SoundFile, "read", short_read)
    for read in (read_audio, _stream_all):
        with pytest.raises(AudioFileError, match=f"{path}: truncated file .*declares 800 frames"):
            read(path)


# --------------------------------------------------------------------------------------------
# item 1: no input is ever written over


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    "layout", ["same folder", "dotdot", "symlinked folder", "symlinked file", "flac to flac",
               "hard link"],
)  # fmt: skip
def test_an_input_is_never_written_over(ckpt: Path, tmp_path: Path, layout: str) -> None:
    """Promise: no input is ever written over, whatever the paths: upsample.py refuses with one
    line naming the input before anything is written."""
    same = tmp_path / "same"
    ext = "flac" if layout == "flac to flac" else "wav"
    x = _good(same / f"x.{ext}")
    src, dst, fmt = x, same, ext
    if layout == "dotdot":
        (same / "sub").mkdir()
        dst = same / "sub" / ".."
    elif layout == "symlinked folder":
        (tmp_path / "link").symlink_to(same)
        dst = tmp_path / "link"
    elif layout == "symlinked file":
        (tmp_path / "other").mkdir()
        src = tmp_path / "other" / f"x.{ext}"
        src.symlink_to(x)
        dst = tmp_path / "other"
    elif layout == "hard link":
        (tmp_path / "out").mkdir()
        os.link(x, tmp_path / "out" / "x.wav")
        dst = tmp_path / "out"
    before = _snapshot(tmp_path)
    with pytest.raises(UserFacingError) as info:
        upsample(_cfg(ckpt, src, dst, format=fmt))
    message = str(info.value)
    assert "would be written over this input" in message and "\n" not in message
    assert _snapshot(tmp_path) == before  # nothing written, nothing changed


def test_a_folder_given_as_input_and_output_is_named_as_such(ckpt: Path, tmp_path: Path) -> None:
    """Promise: a folder that is both input and output gets a message saying so (not 'no audio
    files found'), before anything is written; a link to it or `dir/.` is the same folder."""
    d = tmp_path / "d"
    _good(d / "x.wav")
    (tmp_path / "alias").symlink_to(d)
    before = _snapshot(tmp_path)
    for out in (d, d / ".", tmp_path / "alias"):
        with pytest.raises(UserFacingError, match="the output folder is the input folder"):
            upsample(_cfg(ckpt, d, out))
    assert _snapshot(tmp_path) == before


def test_output_inside_the_input_folder_does_not_take_earlier_outputs_as_inputs(ckpt, tmp_path):
    """Promise: an output folder inside the input folder works, and a second run does not
    super-resolve the first run's outputs; if only outputs are there, the message says so."""
    d = tmp_path / "d"
    _good(d / "x.wav")
    for _ in range(2):
        upsample(_cfg(ckpt, d, d / "out"))
    assert sorted(p.relative_to(d).as_posix() for p in d.rglob("*.wav")) == ["out/x.wav", "x.wav"]
    (d / "x.wav").unlink()
    with pytest.raises(UserFacingError, match="no audio files found outside the output folder"):
        upsample(_cfg(ckpt, d, d / "out"))


def test_two_inputs_with_one_output_name_are_refused_before_writing(ckpt, tmp_path) -> None:
    """Promise: a.wav and a.flac (one output name) are refused, naming both, before anything
    is written: one would silently replace the other."""
    src = tmp_path / "in"
    _good(src / "a.wav")
    sf.write(src / "a.flac", np.zeros(400), LR)
    with pytest.raises(UserFacingError, match=r"a\.wav and .*a\.flac would both be written"):
        upsample(_cfg(ckpt, src, tmp_path / "out"))
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------
# item 2: a folder run processes every good file


def _mixed_folder(src: Path) -> None:
    _good(src / "a_good.wav", seed=1)
    _write_bad("nan", src / "m_bad.wav")
    _write_bad("empty", src / "n_bad.wav")
    _good(src / "z_good.wav", seed=2)


def test_bad_files_are_named_listed_and_every_good_file_is_processed(ckpt, tmp_path, caplog):
    """Promise: a folder run processes every good file; each bad one is named in one line with
    its reason and listed in OUTPUT/failed.csv, and the run ends with a one-line error (exit
    status 1) naming the report."""
    src, out = tmp_path / "in", tmp_path / "out"
    _mixed_folder(src)
    with caplog.at_level("WARNING"), pytest.raises(UserFacingError) as info:
        upsample(_cfg(ckpt, src, out))
    assert sorted(p.name for p in out.glob("*.wav")) == ["a_good.wav", "z_good.wav"]
    assert str(info.value).startswith(f"{out / 'failed.csv'}: 2 of 4 file(s) could not")
    rows = list(csv.DictReader((out / "failed.csv").open()))
    assert [(Path(r["input"]).name, r["reason"].split(" (")[0]) for r in rows] == [
        ("m_bad.wav", "contains non-finite samples"), ("n_bad.wav", "cannot decode audio")]
    warned = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(warned) == 2 and all("\n" not in w for w in warned)
    assert str(src / "m_bad.wav") in warned[0] and str(src / "n_bad.wav") in warned[1]


def test_on_bad_file_error_stops_at_the_first_bad_file(ckpt, tmp_path) -> None:
    """Promise: stopping at the first bad file is one setting away (on_bad_file=error, the data
    configs' vocabulary); an unknown value lists the valid ones."""
    src, out = tmp_path / "in", tmp_path / "out"
    _mixed_folder(src)
    with pytest.raises(AudioFileError, match=f"{src / 'm_bad.wav'}: contains non-finite"):
        upsample(_cfg(ckpt, src, out, on_bad_file="error"))
    assert sorted(p.name for p in out.glob("*.wav")) == ["a_good.wav"]
    with pytest.raises(UserFacingError, match="on_bad_file must be one of error, skip"):
        upsample(_cfg(ckpt, src, out, on_bad_file="stop"))


def test_cli_folder_with_bad_files_exits_non_zero_with_one_line_each(ckpt, tmp_path) -> None:
    """Promise (what a script sees): exit status 1, one stderr line per bad file, the output
    folder on stdout, the last line naming failed.csv, and no traceback."""
    src, out = tmp_path / "in", tmp_path / "out"
    _mixed_folder(src)
    proc = _run_cli(ckpt, src, out, tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == str(out)
    assert proc.stderr.strip().splitlines()[-1].startswith(f"Error: {out / 'failed.csv'}: 2 of 4")
    lines = (proc.stdout + proc.stderr).splitlines()  # Hydra's log goes to the console
    for name in ("m_bad.wav", "n_bad.wav"):
        assert sum(f"skipped: {src / name}: " in line for line in lines) == 1
    assert (out / "z_good.wav").is_file()


def _run_cli(ckpt: Path, src: Path, out: Path, tmp_path: Path, *extra: str, **popen):
    args = [sys.executable, str(REPO / "upsample.py"), f"ckpt_path={ckpt}", f"input={src}",
            f"output={out}", "device=cpu", f"hydra.run.dir={tmp_path / 'run'}", *extra]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env["PYTHONUNBUFFERED"] = "1"
    if popen:
        return subprocess.Popen(args, env=env, text=True, stdin=subprocess.DEVNULL, **popen)
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)  # fmt: skip


# --------------------------------------------------------------------------------------------
# item 4: one line for every failure a user can cause


def _one_line_error(task, cfg) -> str:
    """What the user sees: run_task's one line (SystemExit with the message), no traceback."""
    with pytest.raises(SystemExit) as info:
        run_task(task, cfg)
    message = str(info.value.code)
    assert message.startswith("Error: ") and "\n" not in message, message
    return message


def test_checkpoint_storing_ratio_zero_is_one_line_naming_it(ckpt, tmp_path, monkeypatch):
    """Promise: a checkpoint whose stored ratio is 0 is one line naming the checkpoint, in
    upsample.py and evaluate.py (not a ZeroDivisionError)."""
    from audio_superres.tasks.evaluate import build_for_evaluation

    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    module = SuperResolutionModule(model=MODEL, ratio=4, sample_rate=16000)
    zero = _save(module, tmp_path / "zero.ckpt", ratio=0)
    x = _good(tmp_path / "in" / "x.wav")
    message = _one_line_error(upsample, _cfg(zero, x, tmp_path / "out"))
    assert message.startswith(f"Error: {zero}: the checkpoint stores ratio=0")
    cfg = OmegaConf.create({"ckpt_path": str(zero), "ratio": None, "sample_rate": None})
    with pytest.raises(UserFacingError, match=f"{zero}: the checkpoint stores ratio=0"):
        build_for_evaluation(cfg)
    assert not (tmp_path / "out").exists()


def _wrong_shapes(tmp_path: Path) -> Path:
    """A checkpoint whose weights belong to a wider model than its stored config says."""
    wide = SuperResolutionModule(model={**MODEL, "filters": [16, 16]}, ratio=4, sample_rate=16000)
    narrow = SuperResolutionModule(model=MODEL, ratio=4, sample_rate=16000)
    path = tmp_path / "mismatch.ckpt"
    torch.save({"state_dict": wide.state_dict(), "hyper_parameters": dict(narrow.hparams)}, path)
    return path


def test_checkpoint_with_weights_of_the_wrong_shapes_is_one_line(tmp_path, monkeypatch) -> None:
    """Promise: weights that do not fit the checkpoint's model (size mismatch) are one line
    naming the checkpoint and the first tensor, in upsample.py and evaluate.py."""
    from audio_superres.tasks.evaluate import build_for_evaluation

    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    bad = _wrong_shapes(tmp_path)
    x = _good(tmp_path / "in" / "x.wav")
    message = _one_line_error(upsample, _cfg(bad, x, tmp_path / "out"))
    assert message.startswith(f"Error: {bad}: the checkpoint's weights do not fit its model (")
    assert "has shape [16, " in message
    cfg = OmegaConf.create({"ckpt_path": str(bad), "ratio": None, "sample_rate": None,
                            "data": {"_target_": "unused"}})  # fmt: skip
    with pytest.raises(UserFacingError, match=f"{bad}: the checkpoint's weights do not fit"):
        build_for_evaluation(cfg)


def test_resuming_training_from_weights_of_other_shapes_is_one_line(tmp_path, tiny_corpus):
    """Promise: train.py ckpt_path= with weights of other shapes than the configured model is
    one line naming the checkpoint, before any training step."""
    from audio_superres.tasks.train import train

    from .test_configs import compose_train

    wide = SuperResolutionModule(
        model={**MODEL, "filters": [16, 16], "kernels": [9, 5], "bottleneck_filters": 16},
        ratio=4, sample_rate=16000, lowpass="chebyshev",
    )  # fmt: skip
    path = tmp_path / "wide.ckpt"
    torch.save({"state_dict": wide.state_dict(), "hyper_parameters": dict(wide.hparams)}, path)
    cfg = compose_train(
        ["data=folder", f"data.root={tiny_corpus}", "data.test_speakers=[spk2]", "logger=none",
         "trainer=cpu", f"ckpt_path={path}", "model.filters=[8,16]", "model.kernels=[9,5]",
         "model.bottleneck_filters=16"],
        tmp_path,
    )  # fmt: skip
    with pytest.raises(UserFacingError) as info:
        train(cfg)
    assert str(info.value).startswith(f"{path}: the checkpoint's weights do not fit")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("setting", "expected"),
    [({"ratio": "four"}, "ratio=four is not a positive whole number"),
     ({"sample_rate": "-16000"}, "sample_rate=-16000 is not a positive whole number"),
     ({"device": "foo"}, "device must be one of auto, cpu, cuda (or cuda:N); got device=foo"),
     ({"device": "cuda"}, "device=cuda was asked for, but no CUDA device is available"),
     ({"format": "mp3"}, "format must be one of wav, flac"),
     ({"peak": "loud"}, "peak must be one of warn, clip, normalize"),
     ({"input_kind": "mid"}, "input_kind must be 'lr' or 'hr'"),
     ({"report_max_files": "all"}, "report_max_files must be a positive number"),
     ({"input": "???"}, "input is not set: pass input=..."),
     ({"report_seconds": 0}, "report_seconds must be a positive number"),
     ({"inference": {"chunk": 8, "overlap": 6, "batch_size": 1}},
      "overlap=6 is more than half of chunk=8")],
)  # fmt: skip
def test_bad_settings_are_one_line_naming_the_setting(ckpt, tmp_path, monkeypatch, setting,
                                                      expected):  # fmt: skip
    """Promise: a setting that cannot work (ratio=four, device=cuda without CUDA, device=foo,
    an unknown format/peak/input_kind, report sizes that are not numbers, a required setting
    left unset, an impossible chunk plan) is one line naming it, and nothing is written."""
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    x = _good(tmp_path / "in" / "x.wav")
    message = _one_line_error(upsample, _cfg(ckpt, x, tmp_path / "out", **setting))
    assert expected in message, message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("override", "expected"),
    [("ratio=four", "ratio must be a positive integer, got four"),
     ("sample_rate=abc", "sample_rate must be a positive integer, got abc"),
     ("trainer.accelerator=gpu", "invalid config (trainer): No supported gpu backend found")],
)  # fmt: skip
def test_bad_training_settings_are_one_line(tmp_path, tiny_corpus, monkeypatch, override,
                                            expected):  # fmt: skip
    """Promise: train.py settings a user can get wrong (`ratio=four`, `sample_rate=abc`, a GPU
    accelerator on a machine without one) are one line naming the setting, before any work."""
    from lightning.pytorch.accelerators import CUDAAccelerator

    from audio_superres.tasks.train import train

    from .test_configs import compose_train

    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.setattr(CUDAAccelerator, "is_available", staticmethod(lambda: False))
    cfg = compose_train(
        ["data=folder", f"data.root={tiny_corpus}", "data.test_speakers=[spk2]", "logger=none",
         "trainer=cpu", override], tmp_path)  # fmt: skip
    message = _one_line_error(train, cfg)
    assert expected in message, message
    assert not (tmp_path / "data" / "cache").exists()  # nothing was prepared


@pytest.mark.parametrize("frames", [1, 3])
def test_report_page_is_written_for_one_and_three_frame_inputs(ckpt, tmp_path, frames) -> None:
    """Promise: report=true with a 1- or 3-frame input still writes index.html, with the
    file on it (no scipy traceback after the WAVs are written)."""
    src = tmp_path / "in"
    src.mkdir()
    sf.write(src / "tiny.wav", 0.1 * np.ones(frames, np.float32), LR, subtype="FLOAT")
    _good(src / "normal.wav")
    out = tmp_path / "out"
    upsample(_cfg(ckpt, src, out, report=True))
    assert sf.info(out / "tiny.wav").frames == 4 * frames
    page = (out / "report" / "index.html").read_text()
    assert "tiny.wav" in page and "normal.wav" in page


def test_evaluating_a_folder_whose_every_file_was_skipped_says_so(tmp_path: Path) -> None:
    """Promise: evaluate.py on a folder where every file was skipped as unreadable says that
    (with the cache's report), not 'too short, or no file of test_speakers'."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    from audio_superres.tasks.evaluate import evaluate

    from .conftest import CONF_DIR

    root = tmp_path / "corpus"
    _write_bad("nan", root / "spk" / "a.wav")
    _write_bad("empty", root / "spk" / "b.wav")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("evaluate", overrides=[
            "model=cubic", "data=folder", f"data.root={root}", "data.test_speakers=*",
            "data.corpus.on_bad_file=skip", "ratio=4", "sample_rate=16000", "device=cpu",
            f"data.cache_dir={tmp_path}/cache", "logger=none"])  # fmt: skip
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "eval")
    with pytest.warns(UserWarning), pytest.raises(UserFacingError) as info:
        evaluate(cfg)
    message = str(info.value)
    assert "all 2 audio file(s) were skipped as unreadable" in message, message
    assert "report.json" in message and "\n" not in message


def test_ctrl_c_is_one_line_and_leaves_nothing_half_written(ckpt, tmp_path) -> None:
    """Promise: Ctrl-C (SIGINT) ends upsample.py with one line saying how many files were
    finished and that nothing half-written remains, exit status 130, no traceback; and no
    partial output or temporary is left."""
    src, out = tmp_path / "in", tmp_path / "out"
    for i in range(150):  # enough that the run is still going when the signal comes
        _good(src / f"f{i:03d}.wav", seconds=1.0, seed=i)
    proc = _run_cli(ckpt, src, out, tmp_path, "inference.chunk=256", "inference.overlap=64",
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 240  # a bound on a hung test, not a timing check
    while not (out / "f000.wav").exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "upsample.py never wrote its first file"
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("Interrupted: ") and "of 150 file(s) were finished" in last, last
    assert "no half-written file remains" in last
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temporaries
    for wav in out.glob("*.wav"):  # every output there is complete
        assert sf.info(wav).frames == 4 * LR


# --------------------------------------------------------------------------------------------
# item 5: loud output is named


@pytest.fixture
def loud_ckpt(tmp_path: Path) -> Path:
    """A checkpoint whose output sits far beyond full scale (a DC offset of 3 from its last
    layer's bias), as a mismatched input can drive a real model."""
    torch.manual_seed(0)
    module = SuperResolutionModule(model=MODEL, ratio=4, sample_rate=16000)
    with torch.no_grad():
        module.model.final.bias.fill_(3.0)
    return _save(module, tmp_path / "loud.ckpt")


@pytest.mark.parametrize(("fmt", "peak"), [("wav", "warn"), ("flac", "warn"), ("wav", "clip"),
                                           ("flac", "normalize"), ("wav", "normalize")])
def test_output_beyond_full_scale_is_named_per_file(loud_ckpt, tmp_path, caplog, fmt, peak):
    """Promise: an output whose peak exceeds full scale is named per file with its peak and
    how many dB over; float WAV keeps it (peak=warn), FLAC never clips silently (the clipped
    samples are counted), peak=clip clips, peak=normalize scales the file to full scale."""
    src = tmp_path / "in"
    _good(src / "a.wav", seed=1)
    _good(src / "b.wav", seed=2)
    out = tmp_path / "out"
    with caplog.at_level("WARNING"):
        upsample(_cfg(loud_ckpt, src, out, format=fmt, peak=peak))
    lines = [r.getMessage() for r in caplog.records if "above full scale" in r.getMessage()]
    assert len(lines) == 2 and all("\n" not in line for line in lines)
    for name, line in zip(("a", "b"), lines, strict=True):
        y, _ = sf.read(out / f"{name}.{fmt}", dtype="float32")
        assert line.startswith(f"{out / name}.{fmt}: output peak ")
        db = float(line.split(" is ")[1].split(" dB")[0])
        assert db > 6  # a DC offset of 3: about 10 dB over
        if peak == "normalize":
            assert np.abs(y).max() == pytest.approx(1.0, abs=1e-4) and "scaled down" in line
        elif fmt == "wav" and peak == "warn":
            assert np.abs(y).max() == pytest.approx(10 ** (db / 20), rel=0.01)
            assert "kept in the float WAV" in line
        else:
            assert np.abs(y).max() <= 1.0 and "sample(s) clipped to full scale" in line
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no scratch file left


# --------------------------------------------------------------------------------------------
# item 6: leftovers of a killed run are cleaned


def test_temporaries_of_a_killed_run_are_removed_and_nothing_else(ckpt, tmp_path) -> None:
    """Promise: the hidden temporaries a killed run left (`.NAME.<random>.tmp.EXT`, the names
    of atomic writes) are removed by the next run into the same folder; files that merely look
    alike (not hidden, no random part, a folder) are left alone."""
    src, out = tmp_path / "in", tmp_path / "out"
    _good(src / "x.wav")
    _good(src / "sub" / "y.wav")
    leftovers = [out / ".x.k3j_9abc.tmp.wav", out / "sub" / ".y.zz81q0pl.tmp.wav",
                 out / "report" / ".index.a1b2c3d4.tmp.html"]  # fmt: skip
    kept = [out / "x.tmp.wav", out / ".notes.txt", out / "sub" / ".y.tmp", out / "keep.wav"]
    for p in leftovers + kept:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"partial")
    (out / ".z.abcdefgh.tmp.wav").mkdir()  # a folder with such a name is not ours either
    upsample(_cfg(ckpt, src, out))
    assert not any(p.exists() for p in leftovers)
    assert all(p.read_bytes() == b"partial" for p in kept)
    assert (out / ".z.abcdefgh.tmp.wav").is_dir()
    assert (out / "x.wav").is_file() and (out / "sub" / "y.wav").is_file()


# --------------------------------------------------------------------------------------------
# what a shell script feeding a thousand files hits: each case beside one good file


def _fifo(p: Path) -> None:
    os.mkfifo(p)


def _loop(p: Path) -> None:
    (p.parent / "loop2.lnk").symlink_to(p)
    p.symlink_to(p.parent / "loop2.lnk")


def _pcm(p: Path, subtype: str) -> None:
    sf.write(p, voiced_signal(np.random.default_rng(3), 0.2, LR), LR, subtype=subtype)


# name: (file to create, how to create it, expected: output (relative, frames, channels) or
# the start of the reason it is listed with in failed.csv, what the case promises)
SCRIPT_CASES = {
    "folder named like a .wav": (
        "d.wav/inner.wav", lambda p: _good(p), ("d.wav/inner.wav", 3200, 1),
        "a folder is a folder, whatever its name: its files are processed"),
    "symlink loop": (
        "loop.wav", _loop, "broken symbolic link (or a link loop)",
        "a link loop is named as such, never followed forever"),
    "broken symlink": (
        "gone.wav", lambda p: p.symlink_to(p.parent / "nowhere.wav"),
        "broken symbolic link (or a link loop)", "a dangling link is named, not silently dropped"),
    "zero-length file": (
        "zero.wav", lambda p: p.write_bytes(b""), "cannot decode audio",
        "a 0-byte file is named"),
    "header-only WAV": (
        "header.wav", lambda p: _write_bad("header only", p), "contains no audio frames",
        "a WAV with a header and no frames is named"),
    "truncated WAV": (
        "cut.wav", lambda p: _write_bad("truncated", p), "truncated file",
        "a WAV cut short is named, never half-processed"),
    "NaN samples": (
        "nan.wav", lambda p: _write_bad("nan", p), "contains non-finite samples",
        "NaN samples are named"),
    "text with an audio extension": (
        "notes.wav", lambda p: _write_bad("not audio", p), "cannot decode audio",
        "a non-audio file is named"),
    "WAV named .flac": (
        "wrong.flac", lambda p: sf.write(p, np.full(400, 0.1), LR, format="WAV"),
        ("wrong.wav", 1600, 1), "a file is decoded by its content, not by its extension"),
    "named pipe with an audio name": (
        "pipe.wav", _fifo, "not a regular file",
        "a FIFO is named, and the run does not hang reading it"),
    "stereo": (
        "stereo.wav", lambda p: _good(p, channels=2), ("stereo.wav", 3200, 2),
        "each channel is super-resolved"),
    "six channels": (
        "surround.wav", lambda p: _good(p, channels=6), ("surround.wav", 3200, 6),
        "multichannel files keep every channel"),
    "huge sample values": (
        "huge.wav", lambda p: sf.write(p, 1e4 * np.ones(400, np.float32), LR, subtype="FLOAT"),
        ("huge.wav", 1600, 1), "samples far beyond full scale are processed (and named loud)"),
    "values near the float32 maximum": (
        "overflow.wav", lambda p: sf.write(p, np.full(400, 3e38, np.float32), LR, subtype="FLOAT"),
        "the model's output holds non-finite samples",
        "an input that makes the model overflow is named, never written as NaN/inf"),
    "silence": (
        "silence.wav", lambda p: sf.write(p, np.zeros(400), LR, subtype="FLOAT"),
        ("silence.wav", 1600, 1), "digital silence is processed to finite output"),
    "DC offset": (
        "dc.wav", lambda p: sf.write(p, np.full(400, 0.5), LR, subtype="FLOAT"),
        ("dc.wav", 1600, 1), "a constant signal is processed to finite output"),
    "one frame": (
        "one.wav", lambda p: sf.write(p, [0.1], LR, subtype="FLOAT"), ("one.wav", 4, 1),
        "a 1-frame file gives 4 frames"),
    "non-ASCII, spaces, comma and =": (
        "é ü 声 a,b=c.wav", lambda p: _good(p), ("é ü 声 a,b=c.wav", 3200, 1),
        "any name the file system allows is mirrored as it is"),
    "upper-case extension": (
        "LOUD.WAV", lambda p: _good(p), ("LOUD.wav", 3200, 1), "extensions match in any case"),
    "8-bit PCM": (
        "u8.wav", lambda p: _pcm(p, "PCM_U8"), ("u8.wav", 3200, 1), "8-bit files decode"),
    "24-bit FLAC": (
        "deep.flac", lambda p: _pcm(p, "PCM_24"), ("deep.wav", 3200, 1), "24-bit files decode"),
    "44.1 kHz file": (
        "cd.wav", lambda p: _good(p, sr=44100), ("cd.wav", 3200, 1),
        "a file at another rate is resampled to the model's LR rate first"),
    "AppleDouble junk": (
        "._good.wav", lambda p: p.write_bytes(b"\x00\x05\x16\x07 resource fork"), None,
        "hidden files (macOS ._ companions, .DS_Store) are not inputs"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(SCRIPT_CASES))
def test_a_script_feeding_odd_files(ckpt: Path, tmp_path: Path, case: str) -> None:
    """Promise: every file a script may feed is either super-resolved (right length and
    channels, finite) or named with its reason in failed.csv, and the good file beside it is
    processed either way. The case's own promise is in SCRIPT_CASES."""
    name, make, expected, _promise = SCRIPT_CASES[case]
    src, out = tmp_path / "in", tmp_path / "out"
    _good(src / "good.wav")
    path = src / name
    path.parent.mkdir(parents=True, exist_ok=True)
    make(path)
    cfg = _cfg(ckpt, src, out)
    if isinstance(expected, str):
        with pytest.raises(UserFacingError, match="1 of 2 file"):
            upsample(cfg)
        (row,) = csv.DictReader((out / "failed.csv").open(encoding="utf-8"))
        assert row["input"] == str(path) and row["reason"].startswith(expected), row
    else:
        upsample(cfg)
        assert not (out / "failed.csv").exists()
        if expected is not None:
            rel, frames, channels = expected
            y, sr = sf.read(out / rel, always_2d=True)
            assert (sr, y.shape) == (16000, (frames, channels))
            assert np.isfinite(y).all()
        else:
            assert sorted(p.name for p in out.glob("*.wav")) == ["good.wav"]
    assert sf.info(out / "good.wav").frames == 3200


def test_an_unreadable_file_is_named(ckpt, tmp_path, monkeypatch) -> None:
    """Promise: a file without read permission is named 'cannot read (Permission denied)' and
    the others are processed (as root, which reads through permission bits, the denial is
    injected at the open)."""
    from audio_superres.data import audio_io

    src, out = tmp_path / "in", tmp_path / "out"
    _good(src / "good.wav")
    locked = _good(src / "locked.wav")
    if os.geteuid() != 0:
        locked.chmod(0)
    else:
        real_open = open

        def deny(path, *args, **kwargs):
            if Path(path) == locked:
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr(audio_io, "open", deny, raising=False)
    try:
        with pytest.raises(UserFacingError, match="1 of 2 file"):
            upsample(_cfg(ckpt, src, out))
    finally:
        locked.chmod(0o644)
    (row,) = csv.DictReader((out / "failed.csv").open())
    assert row["reason"] == "cannot read (Permission denied)"
    assert (out / "good.wav").is_file()


def test_an_output_folder_that_is_a_file_or_read_only_is_one_line(ckpt, tmp_path, monkeypatch):
    """Promise: an output 'folder' that is a file, or a read-only one, is one line naming it
    before any file is processed."""
    from audio_superres import utils

    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    x = _good(tmp_path / "in" / "x.wav")
    blocker = tmp_path / "out"
    blocker.write_text("a file where the output folder should be")
    message = _one_line_error(upsample, _cfg(ckpt, x, blocker))
    assert message.startswith(f"Error: {blocker}: cannot write (a file is in the way")
    assert blocker.read_text().startswith("a file where")

    read_only = tmp_path / "ro"
    read_only.mkdir()

    def erofs(*_args, **_kwargs):
        raise OSError(30, os.strerror(30))

    monkeypatch.setattr(utils.tempfile, "mkstemp", erofs)
    message = _one_line_error(upsample, _cfg(ckpt, x, read_only))
    assert message.startswith(f"Error: {read_only}: cannot write (read-only file system")
    assert list(read_only.iterdir()) == []


def test_a_folder_in_the_way_of_an_output_file_is_one_line(ckpt, tmp_path, monkeypatch):
    """Promise: a folder where an output file should go is one line naming it, and no
    temporary is left beside it."""
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    x = _good(tmp_path / "in" / "x.wav")
    out = tmp_path / "out"
    (out / "x.wav").mkdir(parents=True)
    message = _one_line_error(upsample, _cfg(ckpt, x, out))
    assert message.startswith(f"Error: {out / 'x.wav'}: cannot write (a folder is in the way")
    assert [p.name for p in out.iterdir()] == ["x.wav"]


def test_disk_full_mid_run_keeps_finished_outputs_and_leaves_no_temporary(ckpt, tmp_path,
                                                                          monkeypatch):  # fmt: skip
    """Promise: a disk that fills up during the second file stops the run with one line naming
    that output; the first output is complete and no temporary is left."""
    from audio_superres.tasks import upsample as task

    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    src, out = tmp_path / "in", tmp_path / "out"
    _good(src / "a.wav")
    _good(src / "b.wav")
    real_write = task.PeakMeter.write

    def write(self, data):
        if "b" in Path(self.f.name).name.split(".")[1]:
            raise OSError(28, os.strerror(28))
        real_write(self, data)

    monkeypatch.setattr(task.PeakMeter, "write", write)
    message = _one_line_error(upsample, _cfg(ckpt, src, out))
    assert message.startswith(f"Error: {out / 'b.wav'}: cannot write (disk full")
    assert sf.info(out / "a.wav").frames == 3200
    assert sorted(p.name for p in out.iterdir()) == ["a.wav"]


def test_a_single_bad_input_file_is_its_own_one_line_error(ckpt, tmp_path, monkeypatch):
    """Promise: a single input file that is bad gives its own one-line error (no failed.csv),
    and a clean rerun into a folder removes the failed.csv of an earlier run."""
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    bad = _write_bad("nan", tmp_path / "in" / "bad.wav")
    out = tmp_path / "out"
    message = _one_line_error(upsample, _cfg(ckpt, bad, out))
    assert message == f"Error: {bad}: contains non-finite samples (NaN or inf)"
    assert not (out / "failed.csv").exists()
    with pytest.raises(UserFacingError):
        upsample(_cfg(ckpt, bad.parent, out))
    assert (out / "failed.csv").is_file()
    bad.unlink()
    _good(bad.parent / "fixed.wav")
    upsample(_cfg(ckpt, bad.parent, out))
    assert not (out / "failed.csv").exists()


def test_every_test_named_in_the_promise_table_exists() -> None:
    """Promise: docs/reliability.md's table of promises names only tests that exist (a renamed
    or deleted test fails here instead of leaving a promise without its test)."""
    import re

    text = (REPO / "docs" / "reliability.md").read_text()
    table = text[text.index("## Promises and the tests that hold them") :]
    named = set(re.findall(r"`(test_\w+)`", table))
    defined = {
        name
        for path in (REPO / "tests").rglob("test_*.py")
        for name in re.findall(r"^def (test_\w+)", path.read_text(), re.M)
    }
    assert len(named) > 40
    assert named <= defined, sorted(named - defined)
