"""Nothing waits for a person and nothing runs a shell on a user's path (checkpoints and
archives are covered by test_bad_input.py and data/test_download.py)."""

from __future__ import annotations

import ast
from pathlib import Path

from audio_superres.wandb_setup import wandb_mode

from .conftest import REPO


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
