"""precision=auto|32|bf16 (audio_superres.precision): the choice by capability, overrides, the
float32 regions under bf16 autocast, and bf16 vs float32 parity of inference on a tiny model.

bf16 arithmetic is correct (if slow) on every x86-64 CPU, so these tests run everywhere: the
capability is injected where the choice is tested, and parity bounds are bf16's own precision
(8 significant bits), not a figure measured on one CPU's kernels.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from audio_superres import precision as precision_mod
from audio_superres.dsp.cubic import CubicUpsample
from audio_superres.errors import ConfigError
from audio_superres.inference import InferenceSettings, super_resolve
from audio_superres.losses import MRSTFTLoss
from audio_superres.models import APBWE, AudioUNet
from audio_superres.precision import autocast, choose_precision, normalise_precision
from audio_superres.tasks.train import apply_precision


@pytest.mark.parametrize(
    "spelling, name",
    [("auto", "auto"), ("32", "32"), ("32-true", "32"), ("bf16", "bf16"), ("bf16-mixed", "bf16")],
)
def test_spellings(spelling: str, name: str) -> None:
    assert normalise_precision(spelling) == name


@pytest.mark.parametrize("bad", ["16", "fp16", "half", "", "bf"])
def test_unknown_precision_is_one_line_naming_the_setting(bad: str) -> None:
    with pytest.raises(ConfigError, match="inference.precision must be one of auto, 32, bf16"):
        InferenceSettings(precision=bad)


@pytest.mark.parametrize(
    "units, expected", [("AMX-BF16", "bf16"), ("AVX512-BF16", "bf16"), (None, "32")]
)
def test_auto_chooses_by_the_cpus_bf16_units(monkeypatch, units, expected) -> None:
    monkeypatch.setattr(precision_mod, "cpu_bf16_units", lambda: units)
    choice = choose_precision("auto", "cpu")
    assert choice.name == expected
    assert choice.reason.startswith("auto:")
    assert (units or "no native bf16") in choice.reason  # the log says why


@pytest.mark.parametrize("units", ["AVX512-BF16", None])
def test_an_explicit_precision_overrides_auto(monkeypatch, units) -> None:
    monkeypatch.setattr(precision_mod, "cpu_bf16_units", lambda: units)
    assert choose_precision("32", "cpu").name == "32"
    assert choose_precision("bf16", "cpu").name == "bf16"


def test_cpu_bf16_units_reads_this_machine() -> None:
    assert precision_mod.cpu_bf16_units() in (None, "AMX-BF16", "AVX512-BF16")


@pytest.mark.parametrize(
    "asked, units, lightning",
    [
        ("auto", "AMX-BF16", "bf16-mixed"),
        ("auto", None, "32-true"),
        ("32", "AMX-BF16", "32-true"),
        ("bf16", None, "bf16-mixed"),
        ("16-mixed", None, "16-mixed"),  # Lightning's own values pass through
    ],
)
def test_train_resolves_the_trainers_precision(monkeypatch, asked, units, lightning) -> None:
    monkeypatch.setattr(precision_mod, "cpu_bf16_units", lambda: units)
    cfg = OmegaConf.create({"trainer": {"accelerator": "cpu", "precision": asked}})
    apply_precision(cfg)
    assert cfg.trainer.precision == lightning


def test_autocast_32_switches_off_a_callers_bf16_region() -> None:
    layer = torch.nn.Linear(8, 8)
    x = torch.randn(2, 8)
    with autocast("cpu", "bf16"):
        assert layer(x).dtype == torch.bfloat16
        with autocast("cpu", "32"):
            assert layer(x).dtype == torch.float32


def test_float32_regions_stay_float32_under_bf16_autocast() -> None:
    """The spline, AP-BWE's STFT / log / atan2 / iSTFT and the spectral losses are float32 inside
    a bf16 autocast region; the blocks between them are bf16."""
    torch.manual_seed(0)
    model = APBWE(ratio=4, channels=16, layers=1, residual=False)
    seen: dict[str, torch.dtype] = {}

    def record(name: str):
        def hook(_module, _args, out):
            seen[name] = (out[0] if isinstance(out, tuple) else out).dtype

        return hook

    model.upsample.register_forward_hook(record("spline"))
    model.stft.register_forward_hook(record("stft"))
    model.amplitude_blocks[0].pwconv2.register_forward_hook(record("block"))
    lr = torch.randn(2, 1000) * 0.1
    with autocast("cpu", "bf16"):
        log_amp, phase = model.predict_spectrum(lr)
        wave = model(lr)
        loss = MRSTFTLoss()(wave, torch.randn_like(wave))
    assert seen == {"spline": torch.float32, "stft": torch.float32, "block": torch.bfloat16}
    assert log_amp.dtype == phase.dtype == wave.dtype == loss.dtype == torch.float32
    with autocast("cpu", "bf16"):
        assert CubicUpsample(4)(lr).dtype == torch.float32


def snr_db(test: np.ndarray, ref: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref**2) / np.sum((test - ref) ** 2)))


@pytest.mark.parametrize("model_name", ["audiounet", "apbwe"])
def test_bf16_inference_agrees_with_float32(model_name: str) -> None:
    """The same tiny random-init model through the one inference path in both precisions: bf16
    keeps 8 significant bits (about 48 dB per operation), so the outputs agree to well above
    30 dB; the net's own part (output minus the cubic input) agrees too."""
    torch.manual_seed(0)
    if model_name == "audiounet":
        model = AudioUNet(ratio=4, filters=[8, 16], kernels=[9, 9], bottleneck_filters=16)
        torch.nn.init.normal_(model.final.weight, std=0.3)  # untrained, the net is ~silent
    else:
        model = APBWE(ratio=4, channels=16, layers=2, residual=False)
    t = np.arange(6000) / 4000
    noise = np.random.default_rng(0).standard_normal(6000)
    lr = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * noise).astype(np.float32)
    kw = {"chunk": 2048, "overlap": 512, "batch_size": 4, "device": "cpu"}
    y32 = super_resolve(model, lr, 4, precision="32", **kw).numpy()
    y16 = super_resolve(model, lr, 4, precision="bf16", **kw).numpy()
    assert y16.dtype == np.float32 and np.isfinite(y16).all()
    assert not np.array_equal(y16, y32)  # bf16 really ran
    assert snr_db(y16, y32) > 30
    cubic = CubicUpsample(4)(torch.from_numpy(lr)[None])[0].numpy()
    if model_name == "audiounet":  # its output is cubic + net: the net's part itself agrees
        assert snr_db(y16 - cubic, y32 - cubic) > 20
