"""Exporting a training checkpoint as a bundled model (`audio-superres export`): the generator's
weights in safetensors and a JSON model card that records how the model was made and scored
(the format and loading: `pretrained.py`)."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from audio_superres.checkpoint import CheckpointError, load_checkpoint
from audio_superres.pretrained import (
    CARD_FORMAT,
    CARD_KEYS,
    MAX_BUNDLED_BYTES,
    read_card,
)
from audio_superres.resolver import SuperResolver
from audio_superres.utils import atomic_path


def export_bundled(
    ckpt_path: str | os.PathLike,
    name: str,
    folder: str | os.PathLike,
    card_fields: Mapping[str, Any] | None = None,
) -> Path:
    """Write `folder/NAME.safetensors` (the generator's weights, contiguous float32) and
    `folder/NAME.json` (the card: the checkpoint's model config, ratio, rate, training filter,
    the weights' size and SHA-256, plus `card_fields`) from a training checkpoint. Each file is
    written to a temporary name and renamed: never half-written. Returns the card's path."""
    from safetensors.torch import save

    ckpt = load_checkpoint(ckpt_path)
    hp = ckpt["hyper_parameters"]
    generator = SuperResolver.from_loaded(ckpt, str(ckpt_path), device="cpu").model
    weights = {
        k: v.detach().to(torch.float32).contiguous() for k, v in generator.state_dict().items()
    }
    data = save(weights, metadata={"name": name, "format": str(CARD_FORMAT)})
    size = len(data)
    if size > MAX_BUNDLED_BYTES:  # refused before anything is written
        raise CheckpointError(
            f"{ckpt_path}: its generator's weights take {size / 1e6:.1f} MB, over the "
            f"{MAX_BUNDLED_BYTES / 1e6:.0f} MB a bundled model may take"
        )
    folder = Path(folder)
    weights_file = folder / f"{name}.safetensors"
    with atomic_path(weights_file) as tmp:
        tmp.write_bytes(data)
    card: dict[str, Any] = {
        "name": name,
        "format": CARD_FORMAT,
        "model": hp["model"],
        "ratio": int(hp["ratio"]),
        "sample_rate": int(hp["sample_rate"]),
        "training_lowpass": hp.get("lowpass", "chebyshev"),
        "weights": {
            "file": weights_file.name,
            "bytes": size,
            "sha256": hashlib.sha256(data).hexdigest(),
            "parameters": int(sum(v.numel() for v in weights.values())),
            "dtype": "float32",
        },
    }
    for key, value in (card_fields or {}).items():
        if key in CARD_KEYS:
            raise ValueError(f"card field {key!r} is written from the checkpoint; drop it")
        card[key] = value
    path = folder / f"{name}.json"
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")
    read_card(path)
    return path


_LOG_TIME = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+\]")


def _overrides(run_dir: Path) -> list[str] | None:
    import yaml

    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return None
    return [str(o) for o in yaml.safe_load(path.read_text()) or []]


def _log_span_s(log_file: Path) -> float | None:
    """Seconds between the first and last timestamped lines of a run's log."""
    from datetime import datetime

    if not log_file.is_file():
        return None
    stamps = [m.group(1) for line in log_file.read_text(errors="replace").splitlines()
              if (m := _LOG_TIME.match(line))]  # fmt: skip
    if len(stamps) < 2:
        return None
    first, last = (datetime.fromisoformat(s) for s in (stamps[0], stamps[-1]))
    return (last - first).total_seconds()


def git_commit(folder: Path) -> str | None:
    """The commit checked out in `folder` (None outside a git checkout)."""
    import subprocess

    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def training_record(ckpt_path: str | os.PathLike) -> dict[str, Any]:
    """What the card says about training, read from the checkpoint and the run folder it sits
    in (`RUN/checkpoints/X.ckpt`): the command, recipe, data, steps, wall time of the log."""
    ckpt_path = Path(ckpt_path)
    ckpt = load_checkpoint(ckpt_path)
    hp = ckpt["hyper_parameters"]
    run_dir = ckpt_path.resolve().parent.parent
    overrides = _overrides(run_dir)
    data = hp.get("data_config") or {}
    objective = hp.get("objective") or {}
    record: dict[str, Any] = {
        "checkpoint": str(ckpt_path),
        "global_step": ckpt.get("global_step"),
        "command": None if overrides is None else " ".join(["python train.py", *overrides]),
        "objective": objective.get("_target_"),
        "optimizer": (hp.get("optimizer") or {}).get("_target_"),
        "data": {
            "corpus": (data.get("corpus") or {}).get("_target_"),
            "root": data.get("root"),
            "test_speakers": data.get("test_speakers"),
            "patch_len": data.get("patch_len"),
            "batch_size": data.get("batch_size"),
        },
        "wall_time_s": _log_span_s(run_dir / "train.log"),
    }
    init_from = _run_setting(run_dir, "init_from")
    if init_from:  # where its weights started (e.g. the regression warm-up): that run's record
        record["init_from"] = str(init_from)
        if Path(str(init_from)).is_file():
            start = training_record(init_from)
            record["init_from_training"] = {
                k: start[k] for k in ("checkpoint", "global_step", "command", "objective")
            }
    return record


def _run_setting(run_dir: Path, key: str) -> Any:
    """A top-level setting of a run's resolved config (`.hydra/config.yaml`), if recorded."""
    import yaml

    path = run_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        return None
    return (yaml.safe_load(path.read_text()) or {}).get(key)


def evaluation_record(eval_dir: str | os.PathLike) -> dict[str, Any]:
    """An evaluate.py output folder as the card records it: its command, files, filter and the
    model's and cubic's metrics (metrics.json), or the robustness grid's worst and mean condition
    (robustness.csv)."""
    import csv

    eval_dir = Path(eval_dir)
    overrides = _overrides(eval_dir)
    record: dict[str, Any] = {
        "command": None if overrides is None else " ".join(["python evaluate.py", *overrides]),
    }
    grid = eval_dir / "robustness.csv"
    metrics_file = eval_dir / "metrics.json"
    if grid.is_file():
        rows = list(csv.DictReader(grid.open()))
        if not rows:
            raise CheckpointError(f"{grid}: no condition in it")
        gains = [(float(r["snr_gain"]), r["condition"]) for r in rows]
        worst = min(gains)
        record.update(
            n_conditions=len(rows),
            n_files=int(rows[0]["n_files"]),
            worst_condition=worst[1],
            worst_snr_gain=worst[0],
            mean_snr_gain=sum(g for g, _ in gains) / len(gains),
            lsd_below_cubic=sum(float(r["lsd_gain"]) > 0 for r in rows),
            input_conditioning=rows[0].get("input_conditioning", "off"),
        )
    elif metrics_file.is_file():
        metrics = json.loads(metrics_file.read_text())
        for key in ("model", "cubic", "n_files", "ratio", "lowpass", "split", "input_conditioning"):
            if key in metrics:
                record[key] = metrics[key]
    else:
        raise CheckpointError(f"{eval_dir}: neither metrics.json nor robustness.csv in it")
    return record


def model_card_fields(
    ckpt_path: str | os.PathLike, evals: list[str], description: str = ""
) -> dict[str, Any]:
    """The card's fields beyond the model itself: description, training record, commit, and
    each `LABEL=DIR` evaluation (`audio-superres export --eval`)."""
    evaluation = {}
    for item in evals:
        label, sep, folder = item.partition("=")
        if not sep or not label or not folder:
            raise ValueError(f"--eval takes LABEL=DIR (an evaluate.py output folder), got {item!r}")
        evaluation[label] = evaluation_record(folder)
    return {
        "description": description,
        "training": training_record(ckpt_path),
        "commit": git_commit(Path.cwd()),
        "evaluation": evaluation,
    }
