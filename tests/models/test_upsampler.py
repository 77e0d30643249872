"""`model.upsampler`: the input upsampler of every model that takes an upsampled input.

- a checkpoint stored before the setting existed (its model config has no `upsampler` key) loads
  as the 2017 cubic spline and computes exactly what it computed before;
- the choice changes nothing in a state_dict, only the input the network sees;
- the cubic baseline (`model=cubic`) and the cubic reference beside every model stay the spline.
"""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from audio_superres.dsp.cubic import CubicUpsample, cubic_upsample
from audio_superres.dsp.sinc import SincUpsample
from audio_superres.models import CubicBaseline
from audio_superres.models.base import UPSAMPLER_CONTEXT, make_upsampler
from audio_superres.module import SuperResolutionModule
from audio_superres.resolver import SuperResolver

from ..conftest import CONF_DIR

# one config per class that takes an upsampled input, at test size
MODELS = ["audiounet_small", "tfilm_small", "dnn", "apbwe_small"]
SMALL = {"filters": [8] * 4, "bottleneck_filters": 8, "hidden_sizes": [32], "channels": 16}


def model_config(name: str, **overrides: object) -> dict:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"model={name}", "ratio=4"])
    model = OmegaConf.to_container(cfg.model, resolve=True)
    model.update({k: v for k, v in SMALL.items() if k in model}, **overrides)
    return model


def trained_like(module: SuperResolutionModule) -> SuperResolutionModule:
    """Make the network's output matter (untrained models start at their upsampled input)."""
    torch.manual_seed(3)
    with torch.no_grad():
        for p in module.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return module.eval()


@pytest.mark.parametrize("name", MODELS)
def test_a_checkpoint_without_the_key_loads_as_cubic_and_behaves_as_before(name: str) -> None:
    old_cfg = model_config(name)
    del old_cfg["upsampler"]  # what every checkpoint from before the setting stores
    old = trained_like(SuperResolutionModule(model=old_cfg, ratio=4, sample_rate=16000))
    assert old.model.upsampler == "cubic" and isinstance(old.model.upsample, CubicUpsample)
    ckpt = {"hyper_parameters": dict(old.hparams), "state_dict": old.state_dict()}
    assert "upsampler" not in ckpt["hyper_parameters"]["model"]
    loaded = SuperResolutionModule.from_resolver(SuperResolver.from_loaded(ckpt, "old.ckpt"))
    assert loaded.model.upsampler == "cubic" and isinstance(loaded.model.upsample, CubicUpsample)
    assert loaded.model.context == old.model.context
    lr = 0.1 * torch.randn(2, 1000)
    with torch.inference_mode():
        expected = old.model(lr)
        assert torch.equal(loaded.model(lr), expected)
        if hasattr(old.model, "forward_from_cubic"):  # the net on the 2017 spline, explicitly
            assert torch.equal(old.model.forward_from_cubic(cubic_upsample(lr, 4)), expected)
    # the same weights behind the sinc input: the state_dict fits, the output differs
    sinc = SuperResolutionModule(
        model={**old_cfg, "upsampler": "sinc"}, ratio=4, sample_rate=16000
    ).eval()
    assert isinstance(sinc.model.upsample, SincUpsample)
    assert sinc.model.state_dict().keys() == old.model.state_dict().keys()
    sinc.model.load_state_dict(old.model.state_dict())
    with torch.inference_mode():
        assert not torch.allclose(sinc.model(lr), expected, atol=1e-3)
    # the cubic reference scored beside every model is the spline, whatever the model's input
    assert isinstance(sinc.cubic, CubicUpsample)
    lr_val = 0.1 * torch.randn(1, 999)
    assert torch.equal(sinc.cubic(lr_val), cubic_upsample(lr_val, 4))
    if old.model.context is not None:  # TFiLM's LSTMs see everything either way
        extra = UPSAMPLER_CONTEXT["sinc"] - UPSAMPLER_CONTEXT["cubic"]
        assert sinc.model.context == old.model.context + extra


def test_the_cubic_baseline_is_always_the_spline() -> None:
    cfg = model_config("cubic")
    assert "upsampler" not in cfg
    with pytest.raises(TypeError):
        CubicBaseline(4, upsampler="sinc")  # type: ignore[call-arg]
    baseline = CubicBaseline(4)
    lr = torch.randn(2, 300)
    assert torch.equal(baseline(lr), cubic_upsample(lr, 4))


def test_an_unknown_upsampler_is_refused() -> None:
    with pytest.raises(ValueError, match=r"upsampler must be one of \['cubic', 'sinc'\]"):
        make_upsampler("linear", 4)
    with pytest.raises(ValueError, match="upsampler must be one of"):
        cfg = model_config("dnn", upsampler="Sinc")
        SuperResolutionModule(model=cfg, ratio=4, sample_rate=16000)


@pytest.mark.parametrize("name", ["cubic", "sinc"])
def test_each_upsamplers_declared_reach_is_its_impulse_response(name: str) -> None:
    """`UPSAMPLER_CONTEXT` (what every model's `context` adds) covers the upsampler's measured
    reach, and is not an over-estimate: the response is still there 2 LR samples inside it."""
    up = make_upsampler(name, 4)
    m, p = 200, 100
    x = torch.zeros(1, m, dtype=torch.float64)
    x[0, p] = 1.0
    y = up(x)[0].abs()
    distance = (torch.arange(m * 4, dtype=torch.float64) / 4 - p).abs()
    reach = UPSAMPLER_CONTEXT[name]
    assert y[distance > reach].max() < 1e-8 * y.max()
    assert y[distance > reach - 2].max() > 1e-14 * y.max()
