"""`compile:` in train.yaml reaches the training step; checkpoints keep the plain weights.

The wiring is tested with torch.compile's "eager" backend (dynamo tracing, no C compiler, fast);
`compile: true` uses inductor, which is the same switch with a slower first step.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from audio_superres.module import SuperResolutionModule
from audio_superres.tasks.train import build_module

from .test_configs import compose_train

SMALL = {
    "_target_": "audio_superres.models.AudioUNet",
    "ratio": 2,
    "filters": [4, 8],
    "kernels": [9, 9],
    "bottleneck_filters": 8,
    "bottleneck_kernel": 9,
    "dropout": 0.0,
}


def test_compile_switch_trains_a_step_with_the_same_loss_and_state_dict() -> None:
    torch.manual_seed(0)
    plain = SuperResolutionModule(SMALL, ratio=2, sample_rate=16000)
    compiled = SuperResolutionModule(SMALL, ratio=2, sample_rate=16000, compile="eager")
    compiled.load_state_dict(plain.state_dict())
    assert plain.train_model is plain.model
    assert isinstance(compiled.train_model, torch._dynamo.eval_frame.OptimizedModule)
    assert compiled.train_model is compiled.train_model  # compiled once
    assert list(compiled.state_dict()) == list(plain.state_dict())  # no _orig_mod. keys
    batch = 0.1 * torch.randn(2, 1024)
    loss_plain = plain.training_step(batch, 0)
    loss_compiled = compiled.training_step(batch, 0)
    torch.testing.assert_close(loss_compiled, loss_plain)
    loss_compiled.backward()
    grads = [p.grad for p in compiled.model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_compile_setting_comes_from_the_train_config(tmp_path: Path) -> None:
    assert build_module(compose_train(["logger=none"], tmp_path)).compile_model is False
    module = build_module(compose_train(["logger=none", "compile=eager"], tmp_path))
    assert module.compile_model == "eager"
    assert "compile" not in module.hparams  # a speed setting, not part of the checkpoint


@pytest.mark.parametrize("bad", [1, "", None])
def test_compile_rejects_other_values(bad: object) -> None:
    with pytest.raises(ValueError, match="compile must be"):
        SuperResolutionModule(SMALL, ratio=2, sample_rate=16000, compile=bad)  # type: ignore[arg-type]
