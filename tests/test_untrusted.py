"""Nothing waits for a person and nothing runs a shell on a user's path (checkpoints and
archives are covered by test_bad_input.py and data/test_download.py)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

from audio_superres.checkpoint import CheckpointError, load_checkpoint, resolve_allowed_class
from audio_superres.module import SuperResolutionModule
from audio_superres.tasks.evaluate import build_for_evaluation, evaluate
from audio_superres.tasks.upsample import Upsampler
from audio_superres.wandb_setup import wandb_mode

from .conftest import CONF_DIR, REPO


def test_wandb_goes_offline_without_credentials_instead_of_prompting(tmp_path, monkeypatch):
    for key in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL", "NETRC"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert wandb_mode() == "offline"
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password x\n")
    assert wandb_mode() is None  # `wandb login` was run: online
    (tmp_path / ".netrc").write_text("this is not a netrc file {")
    assert wandb_mode() == "offline"  # unreadable: offline, never a prompt
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode() is None  # the user's WANDB_MODE wins


def _python_files() -> list[Path]:
    return sorted((REPO / "src").rglob("*.py")) + sorted(REPO.glob("*.py"))


def test_no_shell_and_no_interactive_input_in_the_package() -> None:
    offences = []
    for path in _python_files():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name in ("input", "getpass", "system", "popen"):
                offences.append(f"{path}:{node.lineno}: {name}()")
            for kw in node.keywords:
                if kw.arg == "shell" and not (
                    isinstance(kw.value, ast.Constant) and kw.value.value is False
                ):
                    offences.append(f"{path}:{node.lineno}: shell=...")
    assert len(_python_files()) > 20
    assert offences == []


# --------------------------------------------------------------------------------------------
# checkpoints build only allow-listed classes (audio_superres.checkpoint)

TINY_UNET = {
    "_target_": "audio_superres.models.AudioUNet",
    "ratio": 4,
    "filters": [8, 16],
    "kernels": [9, 5],
    "bottleneck_filters": 16,
}


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim.txt"
    victim.write_text("the user's precious file\n")
    return victim


def _save_checkpoint(path: Path, trained: dict | None = None, **hp_changes: Any) -> Path:
    """A checkpoint of a module built from `trained` (the tiny U-Net), its hyper_parameters then
    changed as a crafted file would be."""
    module = SuperResolutionModule(
        model=trained or TINY_UNET, ratio=4, sample_rate=16000, lowpass="chebyshev",
    )  # fmt: skip
    hp = {**dict(module.hparams), **hp_changes}
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": hp}, path)
    return path


def _attacks(victim: Path) -> dict[str, dict[str, Any]]:
    """hyper_parameters changes that try to write, delete or build something not a model."""
    write = {"_target_": "audio_superres.utils.atomic_write_text", "_args_": [str(victim), "x"]}
    return {
        "package function": {"model": write},
        "function under models": {
            "model": {"_target_": "audio_superres.models.layers.orthogonal_init_", "_args_": []}
        },
        "attribute path through an imported module": {
            "model": {"_target_": "audio_superres.utils.os.remove", "_args_": [str(victim)]}
        },
        "class reached through a module of the allow-list": {
            "model": {"_target_": "audio_superres.models.audiounet.torch.nn.Linear"}
        },
        "class imported into an allowed module": {
            "model": {"_target_": "audio_superres.models.base.CubicUpsample", "ratio": 4}
        },
        "torch class": {"model": {"_target_": "torch.nn.Linear", "in_features": 1}},
        "package class outside the allow-list": {
            "model": {"_target_": "audio_superres.data.datamodule.SuperResDataModule"}
        },
        "abstract interface": {"model": {"_target_": "audio_superres.models.base.SuperResModel"}},
        "nested in the model": {"model": {**TINY_UNET, "filters": write}},
        "nested in _args_": {"model": {"_target_": "audio_superres.models.CubicBaseline",
                                       "_args_": [write]}},  # fmt: skip
        "in the objective's loss": {
            "objective": {
                "_target_": "audio_superres.objectives.RegressionObjective",
                "loss": {"_target_": "audio_superres.losses.RMSELoss", "eps": write},
            }
        },
        "a function as the optimizer": {
            "optimizer": {"_target_": "audio_superres.utils.atomic_write_text", "_partial_": True}
        },
        "a function as the discriminators' scheduler": {
            "objective": {
                "_target_": "audio_superres.objectives.AdversarialObjective",
                "disc_scheduler": {"_target_": "os.remove", "_args_": [str(victim)]},
            }
        },
        "in the lowpass": {"lowpass": {"kind": "chebyshev", "order": write}},
        "a partial": {"model": {**TINY_UNET, "_partial_": True}},
        "in the data config": {
            "data_config": {
                "_target_": "audio_superres.data.SuperResDataModule",
                "corpus": {"_target_": "audio_superres.utils.os.remove", "_args_": [str(victim)]},
            }
        },
        "a model class as data": {"data_config": {"_target_": "audio_superres.models.AudioUNet"}},
    }


@pytest.mark.parametrize("attack", list(_attacks(Path("v"))))
def test_checkpoints_refuse_anything_but_allowed_classes(tmp_path: Path, attack: str) -> None:
    victim = _victim(tmp_path)
    changes = _attacks(victim)[attack]
    ckpt = _save_checkpoint(tmp_path / "crafted.ckpt", **changes)
    target = next(iter(_targets(changes)))
    expected = f"{ckpt}: refusing to build '"
    loads = [lambda: build_for_evaluation(_compose("evaluate", [f"ckpt_path={ckpt}"], tmp_path))]
    if "data_config" not in changes:  # built only by evaluate.py without data=
        loads += [
            lambda: load_checkpoint(ckpt),
            lambda: Upsampler.from_config(
                _compose("upsample", [f"ckpt_path={ckpt}", "input=x", "output=y"], tmp_path)
            ),
        ]
    for load in loads:
        with pytest.raises(CheckpointError) as info:
            load()
        message = str(info.value)
        assert message.startswith(expected) and "\n" not in message, message
        assert "'" + target + "'" in message or "refusing to build" in message
    assert victim.read_text() == "the user's precious file\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crafted.ckpt", "victim.txt"]


def _targets(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["_target_"]] if "_target_" in node else []
        return own + [t for v in node.values() for t in _targets(v)]
    if isinstance(node, list):
        return [t for v in node for t in _targets(v)]
    return []


def test_evaluate_task_refuses_the_reported_attack_before_writing(tmp_path: Path) -> None:
    """The reported exploit: a model config calling atomic_write_text, run by evaluate.py."""
    victim = _victim(tmp_path)
    write = {"_target_": "audio_superres.utils.atomic_write_text", "_args_": [str(victim), "x"]}
    ckpt = _save_checkpoint(tmp_path / "crafted.ckpt", model=write)
    cfg = _compose("evaluate", [f"ckpt_path={ckpt}"], tmp_path)
    with pytest.raises(CheckpointError, match="refusing to build 'audio_superres.utils.atomic_wr"):
        evaluate(cfg)
    assert victim.read_text() == "the user's precious file\n"


def test_allowed_classes_resolve_by_their_own_or_package_path() -> None:
    assert resolve_allowed_class("audio_superres.models.AudioUNet").__name__ == "AudioUNet"
    assert resolve_allowed_class("audio_superres.models.audiounet.AudioUNet").__name__ == (
        "AudioUNet"
    )
    assert resolve_allowed_class("audio_superres.losses.MRSTFTLoss").__name__ == "MRSTFTLoss"
    assert resolve_allowed_class("audio_superres.models.tfilm.TFiLM").__name__ == "TFiLM"
    with pytest.raises(ValueError, match="outside the allow-list"):
        resolve_allowed_class("audio_superres.models.base.CubicUpsample")


def test_stored_configs_that_are_never_built_do_not_block_a_checkpoint(tmp_path: Path) -> None:
    """Optimizer configs kept for reference, and a data config of the user's own corpus class
    (never built when data= is given, nor by upsample.py), leave the model loadable."""
    optim = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 3e-4}
    data = {"_target_": "my_lab.corpora.LabDataModule", "root": "/data"}
    ckpt = _save_checkpoint(tmp_path / "with_optim.ckpt", optimizer=optim, data_config=data)
    assert load_checkpoint(ckpt)["hyper_parameters"]["optimizer"] == optim
    module, _, _ = build_for_evaluation(
        _compose("evaluate", [f"ckpt_path={ckpt}", "data=folder", "data.root=x"], tmp_path)
    )
    assert type(module.model).__name__ == "AudioUNet"
    up = Upsampler.from_config(
        _compose("upsample", [f"ckpt_path={ckpt}", "input=x", "output=y"], tmp_path)
    )
    assert type(up.model).__name__ == "AudioUNet"


NEW_MODEL = '''
from torch import Tensor

from audio_superres.models.base import SuperResModel


class RepeatModel(SuperResModel):
    """Sample-and-hold: each LR sample repeated `ratio` times."""

    chunk_alignment = 1
    context = 0

    def forward(self, lr: Tensor) -> Tensor:
        return lr.repeat_interleave(self.ratio, dim=-1)
'''


def test_a_new_model_added_the_documented_way_loads(tmp_path: Path, monkeypatch) -> None:
    """docs/models.md: a SuperResModel subclass in a new module under audio_superres.models."""
    import audio_superres.models as models

    folder = tmp_path / "models_extra"
    folder.mkdir()
    (folder / "repeat_example.py").write_text(NEW_MODEL)
    monkeypatch.setattr(models, "__path__", [*models.__path__, str(folder)])
    monkeypatch.delitem(sys.modules, "audio_superres.models.repeat_example", raising=False)
    model = {"_target_": "audio_superres.models.repeat_example.RepeatModel", "ratio": 4}
    ckpt = _save_checkpoint(tmp_path / "new.ckpt", trained=model)
    cfg = _compose("upsample", [f"ckpt_path={ckpt}", "input=x", "output=y"], tmp_path)
    up = Upsampler.from_config(cfg)
    assert type(up.model).__name__ == "RepeatModel"
    assert up.model(torch.ones(1, 3)).shape == (1, 12)


def _compose(name: str, overrides: list[str], tmp_path: Path) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(name, overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "out")
        cfg.paths.data_dir = str(tmp_path / "data")
    return cfg
