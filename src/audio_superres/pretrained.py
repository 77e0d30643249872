"""Bundled models: a generator's weights in safetensors beside a JSON model card.

A bundled model is two files in a folder (the package's own: `audio_superres/weights/`):

* `NAME.safetensors`: the generator's weights only (safetensors stores tensors and nothing
  else, so reading it can never run code);
* `NAME.json`: the model card: the stored model config (built only through the allow-list of
  `checkpoint.py`, exactly as a checkpoint's), ratio, rates, training filter, the weights'
  SHA-256, and what a reader needs to trust the numbers: the recipe and its command, data,
  steps, wall time, commit, the evaluations (held-out languages, the VCTK clips, the robustness
  grid) with their commands.

`load_bundled` turns the pair into what `checkpoint.load_checkpoint` returns for a training
checkpoint (`{"hyper_parameters", "state_dict"}`), so `SuperResolver.from_pretrained` builds it
through the same path and checks as `from_checkpoint`. `export.py` writes the pair from a
training checkpoint (`audio-superres export`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from audio_superres.checkpoint import (
    GENERATOR_PREFIX,
    CheckpointError,
    check_stored_configs,
)

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
CARD_FORMAT = 1
MAX_BUNDLED_BYTES = 10_000_000  # a bundled model travels in git and in the wheel
CARD_KEYS = ("name", "format", "model", "ratio", "sample_rate", "training_lowpass", "weights")


def card_path(name_or_path: str | os.PathLike) -> Path:
    """The card of a bundled model's name (in the package's `weights/`), or of a path to a
    `.json` card or its `.safetensors` weights."""
    text = str(name_or_path)
    if text.endswith((".json", ".safetensors")) or os.sep in text:
        return Path(text).with_suffix(".json")
    return WEIGHTS_DIR / f"{text}.json"


def read_card(path: str | os.PathLike) -> dict[str, Any]:
    """A model card, checked for the fields loading needs (a CheckpointError naming the file
    and what is wrong otherwise). JSON only: reading it runs no code."""
    path = Path(path)
    try:
        card = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: model card not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not a readable model card ({exc})") from exc
    if not isinstance(card, dict):
        raise CheckpointError(f"{path}: not a model card (a JSON object is expected)")
    missing = [k for k in CARD_KEYS if k not in card]
    if missing:
        raise CheckpointError(f"{path}: not a model card (missing {', '.join(missing)})")
    if card["format"] != CARD_FORMAT:
        raise CheckpointError(
            f"{path}: model card format {card['format']!r}; this version reads {CARD_FORMAT}"
        )
    if not isinstance(card["model"], Mapping) or "_target_" not in card["model"]:
        raise CheckpointError(f"{path}: its model config has no _target_ class")
    return card


def bundled_models() -> dict[str, dict[str, Any]]:
    """The models bundled in the package's `weights/`, name -> model card."""
    if not WEIGHTS_DIR.is_dir():
        return {}
    return {p.stem: read_card(p) for p in sorted(WEIGHTS_DIR.glob("*.json"))}


def load_bundled(name_or_path: str | os.PathLike) -> dict[str, Any]:
    """A bundled model as `checkpoint.load_checkpoint` gives a checkpoint: its stored configs
    checked against the allow-list, its weights read with safetensors and checked against the
    card's SHA-256. `where` for errors is the card's path."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = card_path(name_or_path)
    card = read_card(path)
    hp = {
        "model": card["model"],
        "ratio": card["ratio"],
        "sample_rate": card["sample_rate"],
        "lowpass": card["training_lowpass"],
    }
    check_stored_configs(hp, str(path))
    weights_file = path.parent / str(card["weights"].get("file", f"{path.stem}.safetensors"))
    if not weights_file.is_file():
        raise CheckpointError(f"{weights_file}: the weights of model card {path} are missing")
    try:
        data = weights_file.read_bytes()  # read once: hashed, then parsed
    except OSError as exc:
        raise CheckpointError(f"{weights_file}: not readable safetensors ({exc})") from exc
    expected = card["weights"].get("sha256")
    if expected and hashlib.sha256(data).hexdigest() != expected:
        raise CheckpointError(
            f"{weights_file}: its SHA-256 differs from the one in {path.name} (a damaged or "
            "replaced file)"
        )
    try:
        weights = load(data)
    except (SafetensorError, ValueError) as exc:
        raise CheckpointError(f"{weights_file}: not readable safetensors ({exc})") from exc
    training = card.get("training") or {}
    return {
        "hyper_parameters": hp,
        "state_dict": {GENERATOR_PREFIX + k: v for k, v in weights.items()},
        "global_step": training.get("global_step"),
        "card": card,
        "card_path": str(path),
    }
