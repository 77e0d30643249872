"""The model contract (`models/base.SuperResModel`, docs/models.md) for EVERY `conf/model/*.yaml`.

Configs are discovered from the folder, so a new model yaml is tested here without editing this
file. Each is composed with Hydra at every ratio, with small widths where the config has the
usual width keys (the paper sizes are too slow for a 2-core CPU; depth, kernels, patch and block
sizes, i.e. everything that sets `chunk_alignment` and `context`, stay as configured):

- any length m (1, odd, primes, long) -> `(B, m * ratio)` float32, finite;
- `ratio`, `chunk_alignment` and `context` declared as ints (context may be None);
- chunked inference (`inference.super_resolve`, a small chunk so several chunks are used) equals
  whole-file output to numerical noise where `context` is finite, and stays close (SNR) for None;
- `context` is right: an impulse in the input of a random-init model changes no output farther
  than `context` LR samples away (and the declared value is not a gross over-estimate).

Configs with an `upsampler` key run with the one they set at every ratio, and with the other one
(cubic / sinc) at a single ratio for the contract and at both for the receptive field, whose
reach depends on it (`models.base.UPSAMPLER_CONTEXT`).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import OmegaConf

from audio_superres.dsp.cubic import CubicUpsample
from audio_superres.inference import plan_chunks, super_resolve
from audio_superres.models.base import CUBIC_CONTEXT, UPSAMPLER_CONTEXT, UPSAMPLERS, SuperResModel

from ..conftest import CONF_DIR

MODEL_CONFIGS = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))
RATIOS = [2, 3, 4, 6, 8]
# the configs that choose an input upsampler, and the one each chooses
CONFIG_UPSAMPLER = {
    name: OmegaConf.load(CONF_DIR / "model" / f"{name}.yaml").get("upsampler")
    for name in MODEL_CONFIGS
}
OTHER_UPSAMPLERS = [
    (name, other)
    for name, chosen in CONFIG_UPSAMPLER.items()
    if chosen is not None
    for other in UPSAMPLERS
    if other != chosen
]
LENGTHS = [1, 2, 3, 7, 13, 101, 1009]
# width knobs shrunk for CPU tests (only those a config has)
SMALL = {"filters": 8, "bottleneck_filters": 8, "hidden_sizes": 32, "channels": 16}


def build(
    name: str, ratio: int, seed: int = 0, small: dict | None = None, upsampler: str | None = None
) -> SuperResModel:
    """`conf/model/<name>.yaml` at `ratio`, widths shrunk, eval mode, the net's output active;
    `upsampler` overrides the config's."""
    GlobalHydra.instance().clear()
    overrides = [f"model={name}", f"ratio={ratio}"]
    if upsampler is not None:
        overrides.append(f"model.upsampler={upsampler}")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    for key, width in (SMALL if small is None else small).items():
        value = model_cfg.get(key)
        if isinstance(value, list):
            model_cfg[key] = [width] * len(value)
        elif isinstance(value, int):
            model_cfg[key] = width
    torch.manual_seed(seed)
    model = instantiate(model_cfg)
    if upsampler is not None:
        assert model.upsampler == upsampler
    for module in model.modules():  # an untrained model is ~cubic: make the net matter
        if module is getattr(model, "final", None) or module is getattr(model, "out", None):
            torch.nn.init.normal_(module.weight, std=0.3)
    return model.eval()


def snr_db(pred: np.ndarray, ref: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref**2) / max(np.sum((pred - ref) ** 2), 1e-300)))


def test_every_model_config_is_discovered() -> None:
    assert {"audiounet", "audiounet_small", "cubic", "dnn", "tfilm", "tfilm_small"} <= set(
        MODEL_CONFIGS
    )
    # every model with an input upsampler offers the choice; the cubic baseline never does
    assert CONFIG_UPSAMPLER["cubic"] is None
    for name in MODEL_CONFIGS:
        if name != "cubic":
            assert CONFIG_UPSAMPLER[name] in UPSAMPLERS, name


CONTRACT_CASES = [(name, ratio, None) for name in MODEL_CONFIGS for ratio in RATIOS] + [
    (name, 3, other) for name, other in OTHER_UPSAMPLERS
]
FIELD_CASES = [(name, ratio, None) for name in MODEL_CONFIGS for ratio in (2, 4)] + [
    (name, ratio, other) for name, other in OTHER_UPSAMPLERS for ratio in (2, 4)
]


@pytest.mark.parametrize(("name", "ratio", "upsampler"), CONTRACT_CASES)
def test_contract(name: str, ratio: int, upsampler: str | None) -> None:
    model = build(name, ratio, upsampler=upsampler)
    assert isinstance(model, SuperResModel), type(model)
    assert model.ratio == ratio and type(model.ratio) is int
    align, context = model.chunk_alignment, model.context
    assert type(align) is int and align >= 1, align
    assert context is None or (type(context) is int and context >= 0), context

    rng = np.random.default_rng(ratio)
    with torch.inference_mode():
        for m in LENGTHS:
            x = torch.from_numpy(rng.standard_normal((2, m)).astype(np.float32)) * 0.1
            y = model(x)
            assert y.shape == (2, m * ratio) and y.dtype == torch.float32, (name, ratio, m)
            assert torch.isfinite(y).all(), (name, ratio, m)

    # long enough for three chunks of the smallest plan the model allows (a finite context sets
    # the overlap; for None, a quarter of a chunk of a few alignment steps)
    align_lr = align // np.gcd(align, ratio)
    chunk, overlap = (64, 0) if context is not None else (max(64, 8 * align_lr), 2 * align_lr)
    small = plan_chunks(10**9, ratio, chunk, overlap, align, context)
    m = small.chunk + 2 * small.hop + 37
    lr = torch.from_numpy(rng.standard_normal(m).astype(np.float32)) * 0.1
    with torch.inference_mode():
        whole = model(lr[None])[0].numpy()
    kw = {"chunk": chunk, "overlap": overlap, "batch_size": 4, "device": "cpu"}
    chunked = super_resolve(model, lr, ratio, **kw)
    assert chunked.shape == (m * ratio,)
    plan = plan_chunks(m, ratio, chunk, overlap, align, context)
    assert len(plan.starts) >= 3
    if context is not None:  # equal to numerical noise (float32)
        scale = np.abs(whole).max()
        np.testing.assert_allclose(chunked.numpy(), whole, atol=1e-5 * scale, rtol=0)
    else:  # the model sees the whole input: chunked only approximates it
        assert snr_db(chunked.numpy(), whole) > 15


def net_reach(model: SuperResModel, x: torch.Tensor, q: int) -> float:
    """LR samples from HR output sample `q` to the farthest network input sample it depends on.

    The support of d y[q] / d input: exact zeros outside the receptive field and non-zero products
    inside it, so the result does not depend on how a CPU's kernels round (a threshold on the
    difference of two outputs does: the far tails of a random-init net lie near 1e-13 of the
    peak, where kernels disagree). The gradient is taken at the upsampler's output (HR), so its
    own reach (the spline's is global, decaying) is left out: this is the net's reach.
    """
    captured: list[torch.Tensor] = []

    def take(_module: torch.nn.Module, _args: object, out: torch.Tensor) -> torch.Tensor:
        out = out.detach().requires_grad_(True)
        captured.append(out)
        return out

    hooks = [
        module.register_forward_hook(take)
        for module in model.modules()
        if isinstance(module, tuple(UPSAMPLERS.values()))
    ]
    x = x.clone().requires_grad_(True)
    try:
        model(x)[0, q].backward()
    finally:
        for hook in hooks:
            hook.remove()
    ratio = model.ratio
    inputs = [(c.grad[0], ratio) for c in captured] or [(x.grad[0], 1)]
    reach = 0.0
    for grad, per_lr in inputs:
        support = np.flatnonzero(grad.abs().numpy() > 0)
        reach = max(reach, float(np.abs(support / per_lr - q / ratio).max()))
    return reach


class SplineThenConv(SuperResModel):
    """A known receptive field: the spline, then one HR convolution of half-width `half`."""

    def __init__(self, ratio: int, half: int) -> None:
        super().__init__(ratio)
        self.upsample = CubicUpsample(ratio)
        self.conv = torch.nn.Conv1d(1, 1, 2 * half + 1, padding=half)

    @property
    def chunk_alignment(self) -> int:
        return 1

    @property
    def context(self) -> int:
        return CUBIC_CONTEXT

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.conv(self.upsample(lr)[:, None])[:, 0]


@pytest.mark.parametrize("ratio, half", [(2, 10), (4, 37), (3, 0)])
def test_net_reach_measures_a_known_receptive_field(ratio: int, half: int) -> None:
    model = SplineThenConv(ratio, half).double()
    x = torch.randn(1, 200, dtype=torch.float64)
    assert net_reach(model, x, 100 * ratio) == half / ratio


@pytest.mark.parametrize(("name", "ratio", "upsampler"), FIELD_CASES)
def test_declared_context_covers_the_measured_receptive_field(
    name: str, ratio: int, upsampler: str | None
) -> None:
    """An impulse at LR sample p changes HR outputs only within `context` LR samples of p; with
    context None, it does reach far (else the model should declare a finite context)."""
    # AP-BWE at full width: with 16 channels its far paths fall below double precision
    widths = {k: v for k, v in SMALL.items() if k != "channels"}
    model = build(name, ratio, seed=1, small=widths, upsampler=upsampler).double()
    with torch.no_grad():  # wake every path (layer scales, zero-initialised output layers)
        for param in model.parameters():
            param.add_(0.02 * torch.randn_like(param))
    context = model.context
    if context is None:
        p = 800
        m = 2 * p + model.chunk_alignment
        x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, m))) * 0.1
        bumped = x.clone()
        bumped[0, p] += 1.0
        with torch.inference_mode():
            delta = (model(bumped) - model(x))[0].abs().numpy()
        distance = np.abs(np.arange(m * ratio) / ratio - p)
        assert distance[delta > 1e-6 * delta.max()].max() > p / 2, (name, ratio)
        return
    p = 4 * context + 40
    m = 2 * p + model.chunk_alignment  # the impulse well inside
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((1, m))) * 0.1
    bumped = x.clone()
    bumped[0, p] += 1.0
    with torch.inference_mode():
        delta = (model(bumped) - model(x))[0].abs().numpy()
    distance = np.abs(np.arange(m * ratio) / ratio - p)  # in LR samples
    assert delta.max() > 0
    outside = delta[distance > context].max()
    assert outside < 1e-8 * delta.max(), (name, ratio, context, outside / delta.max())
    # the net's own reach (beyond the upsampler's): covered by the declared context, and the
    # declaration is not a gross over-estimate (measured: 80-99% of it for every model)
    # (the farthest output of a patch-based model, e.g. the DNN's, lies at its patch's edge:
    # outputs across one alignment period are measured)
    offsets = np.unique(np.linspace(0, model.chunk_alignment - 1, 3).astype(int))
    reach = max(net_reach(model, x, p * ratio + int(k)) for k in offsets)
    declared = context - UPSAMPLER_CONTEXT[getattr(model, "upsampler", "cubic")]
    assert 0.75 * declared <= reach <= declared, (name, ratio, context, reach)


def test_the_lightning_module_refuses_a_model_outside_the_interface() -> None:
    """An nn.Module under audio_superres.models that is not a SuperResModel (here a layer) passes
    the checkpoint allow-list but is not a model: a ConfigError naming the class."""
    from audio_superres.errors import ConfigError
    from audio_superres.module import SuperResolutionModule

    layer = {"_target_": "audio_superres.models.tfilm.TFiLM", "channels": 4, "block_size": 2}
    with pytest.raises(ConfigError, match="audio_superres.models.tfilm.TFiLM is not a SuperResMod"):
        SuperResolutionModule(model=layer, ratio=4, sample_rate=16000)
