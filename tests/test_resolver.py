"""`SuperResolver`, the inference object: any input rate, mono and stereo, long inputs through the
chunked path, the same output as upsample.py, no Lightning/Hydra needed (issue 21)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from omegaconf import OmegaConf

from audio_superres import SuperResolver
from audio_superres.checkpoint import CheckpointError
from audio_superres.errors import ConfigError, UserFacingError
from audio_superres.inference import InferenceSettings
from audio_superres.tasks.upsample import upsample

from .conftest import REPO, voiced_signal, write_tiny_checkpoint

SMALL = InferenceSettings(chunk=1024, overlap=256, batch_size=4, precision="32")


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    """A checkpoint as Lightning writes it (state_dict + hyper_parameters), untrained."""
    return write_tiny_checkpoint(tmp_path / "model.ckpt", global_step=7)


def resolver(ckpt: Path, **kw) -> SuperResolver:
    return SuperResolver.from_checkpoint(
        ckpt, device="cpu", precision="32", settings=kw.pop("settings", SMALL), **kw
    )


def test_holds_the_checkpoints_model_rates_and_settings(ckpt):
    r = resolver(ckpt)
    assert (r.ratio, r.sample_rate, r.lr_rate) == (4, 16000, 4000)
    assert type(r.model).__name__ == "AudioUNet" and not r.model.training
    assert r.training_lowpass["kind"] == "chebyshev"
    assert (r.settings.chunk, r.precision, str(r.device)) == (1024, "32", "cpu")
    assert r.input_conditioning == "auto" and r.info["global_step"] == 7
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    for k, v in r.model.state_dict().items():
        assert torch.equal(v, state[f"model.{k}"])


def test_importing_and_using_it_loads_no_lightning_metrics_or_hydra(ckpt):
    code = (
        "import sys, numpy as np\n"
        "from audio_superres import SuperResolver\n"
        f"r = SuperResolver.from_checkpoint({str(ckpt)!r}, device='cpu', precision='32')\n"
        "y, rate = r.sr(np.zeros(3000, dtype=np.float32), 8000)\n"
        "assert rate == 16000 and y.shape == (6000,), (rate, y.shape)\n"
        "bad = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'lightning', 'pytorch_lightning', 'torchmetrics', 'hydra'})\n"
        "print('loaded:', bad)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert "loaded: []" in proc.stdout, proc.stdout


def test_any_input_rate_is_resampled_to_the_low_res_rate_and_logged(ckpt, caplog):
    r = resolver(ckpt)
    x = voiced_signal(np.random.default_rng(0), 0.5, 8000).astype(np.float32)
    with caplog.at_level("INFO"):
        y, rate = r.sr(x, 8000)
    assert rate == 16000 and y.dtype == np.float32 and y.shape == (len(x) * 2,)
    assert any("8000 Hz is not the model's low-res rate 4000 Hz" in m for m in caplog.messages)
    caplog.clear()
    y4, _ = r.sr(x[::2].copy(), 4000)  # at the model's rate: no resampling, nothing said
    assert y4.shape == (len(x[::2]) * 4,)
    assert not any("resampling" in m for m in caplog.messages)
    y44, rate = r.sr(torch.from_numpy(voiced_signal(np.random.default_rng(1), 0.1, 44100)), 44100)
    assert isinstance(y44, torch.Tensor) and rate == 16000 and y44.shape == (1600,)


def test_mono_and_stereo_each_channel_separately(ckpt):
    r = resolver(ckpt, input_conditioning="off")
    rng = np.random.default_rng(1)
    stereo = np.stack([voiced_signal(rng, 0.6, 4000), voiced_signal(rng, 0.6, 4000)])
    y, rate = r.sr(stereo.astype(np.float32), 4000)
    assert y.shape == (2, stereo.shape[1] * 4) and y.dtype == np.float32 and rate == 16000
    for c in range(2):
        mono, _ = r.sr(stereo[c], 4000)
        np.testing.assert_allclose(y[c], mono, atol=1e-5, rtol=0)
    with pytest.raises(UserFacingError, match="shape"):
        r.sr(np.zeros((1, 2, 3)), 4000)
    with pytest.raises(UserFacingError, match="non-finite"):
        r.sr(np.full(100, np.nan), 4000)


def test_a_long_input_in_many_chunks_equals_the_whole_signal_at_once(ckpt):
    x = voiced_signal(np.random.default_rng(2), 3.0, 4000).astype(np.float32)
    chunked = resolver(ckpt, input_conditioning="off")  # 1024-sample chunks: a dozen of them
    whole = resolver(
        ckpt, input_conditioning="off", settings=InferenceSettings(chunk=len(x), precision="32")
    )
    y, _ = chunked.sr(x, 4000)
    with torch.inference_mode():
        direct = whole.model(torch.from_numpy(x)[None])[0].numpy()
    np.testing.assert_allclose(whole.sr(x, 4000)[0], direct, atol=1e-5, rtol=0)
    np.testing.assert_allclose(y, direct, atol=1e-4, rtol=0)


@pytest.mark.parametrize("rate", [4000, 8000])
def test_the_same_output_as_upsample_py_bit_for_bit(ckpt, tmp_path, rate):
    rng = np.random.default_rng(3)
    x = np.stack([voiced_signal(rng, 1.5, rate), rng.standard_normal(int(1.5 * rate)) * 0.05])
    src = tmp_path / "in.wav"
    sf.write(src, x.T.astype(np.float32), rate, subtype="FLOAT")
    settings = {"chunk": 1024, "overlap": 256, "batch_size": 4, "precision": "32"}
    cfg = OmegaConf.create(
        {"ckpt_path": str(ckpt), "ratio": None, "sample_rate": None, "device": "cpu",
         "progress": False, "input": str(src), "output": str(tmp_path / "out"),
         "inference": settings}
    )  # fmt: skip
    upsample(cfg)
    expected, sr_out = sf.read(tmp_path / "out" / "in.wav", dtype="float32", always_2d=True)
    r = resolver(ckpt)
    y, rate_out = r.sr(sf.read(src, dtype="float32", always_2d=True)[0].T, rate)
    assert sr_out == rate_out == 16000
    assert np.array_equal(y, expected.T)  # bit for bit
    r.sr_file(src, tmp_path / "api.wav")
    assert np.array_equal(sf.read(tmp_path / "api.wav", dtype="float32")[0], expected)


def test_refusals_are_one_line_user_errors(ckpt, tmp_path):
    with pytest.raises(CheckpointError, match="nope.ckpt: checkpoint not found"):
        SuperResolver.from_checkpoint(tmp_path / "nope.ckpt")
    with pytest.raises(ConfigError, match="speech-r9: no bundled model .*available: speech-r4"):
        SuperResolver.from_pretrained("speech-r9")
    with pytest.raises(ConfigError, match="input_conditioning must be one of auto, off, always"):
        resolver(ckpt, input_conditioning="sometimes")
    with pytest.raises(ConfigError, match="device=cuda"):
        if torch.cuda.is_available():
            raise ConfigError("device=cuda (a GPU is here: nothing to refuse)")
        SuperResolver.from_checkpoint(ckpt, device="cuda")
    with pytest.raises(UserFacingError, match="written over this input"):
        src = tmp_path / "a.wav"
        sf.write(src, np.zeros(400, dtype=np.float32), 4000, subtype="FLOAT")
        resolver(ckpt).sr_file(src, src)


def test_evaluate_builds_the_checkpoints_generator_through_the_resolver(ckpt, tmp_path):
    """evaluate.py's module holds the generator `SuperResolver` built (issue 21: one way to get a
    generator from a checkpoint), with evaluate's own lowpass= and the stored model config."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from audio_superres.module import SuperResolutionModule
    from audio_superres.tasks.evaluate import build_for_evaluation

    from .conftest import CONF_DIR

    r = resolver(ckpt)
    module = SuperResolutionModule.from_resolver(r, n_log_examples=1)
    stored = torch.load(ckpt, weights_only=True)["hyper_parameters"]
    assert module.model is r.model and (module.ratio, module.sample_rate) == (4, 16000)
    assert module.hparams["model"] == r.model_config == stored["model"]
    assert module.hparams["lowpass"] == r.training_lowpass == stored["lowpass"]

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        overrides = [f"ckpt_path={ckpt}", "data=folder", f"data.root={tmp_path}",
                     "lowpass=butterworth"]  # fmt: skip
        cfg = compose("evaluate", overrides=overrides)
    evaluated, _, _ = build_for_evaluation(cfg)
    assert evaluated.lowpass.kind == "butterworth" and evaluated.hparams["model"] == stored["model"]
    weights = evaluated.model.state_dict()
    assert weights.keys() == r.model.state_dict().keys()
    for k, v in r.model.state_dict().items():
        assert torch.equal(weights[k], v)

    bare = SuperResolver(
        model=r.model, ratio=4, sample_rate=16000, training_lowpass=r.training_lowpass,
        device="cpu",
    )  # fmt: skip
    with pytest.raises(ValueError, match="no model config"):
        SuperResolutionModule.from_resolver(bare)
