"""OmegaConf resolvers of the configs, registered when the package is imported.

Model size is set the same way for every family: the top-level keys `model_width` and
`model_depth` (null = the model config's own default), read by `${model_size:width,32}` in a
model config and turned into that family's arguments:

    filters: ${unet_filters:${model_size:width,32},${model_size:depth,4}}   # U-Net, TFiLM
    hidden_sizes: ${repeat:${model_size:width,1024},${model_size:depth,3}}   # DNN
    channels: ${model_size:width,128}, layers: ${model_size:depth,4}         # AP-BWE

so `python train.py model=tfilm_small model_depth=3 model_width=16` and `sweep=depth` work for
any model whose config reads them.

`${lightning_precision:${precision},${.accelerator}}` (conf/trainer/default.yaml) turns the
top-level `precision` (auto, 32, bf16) into the Trainer's setting for the device it trains on.
"""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

from audio_superres.precision import lightning_precision

__all__ = ["model_size", "register_resolvers", "repeat", "unet_bottleneck", "unet_filters"]

MAX_WIDTH_MULTIPLE = 4  # U-Net filters double per level up to 4x the top level's


def model_size(key: str, default: Any, *, _root_: Any = None) -> Any:
    """`model_<key>` of the root config when set (not null), else the model config's default."""
    value = OmegaConf.select(_root_, f"model_{key}", default=None) if _root_ is not None else None
    return default if value is None else value


def unet_filters(width: int, depth: int) -> list[int]:
    """Filters per down level: `width` doubling per level, capped at 4x `width`."""
    if int(width) < 1 or int(depth) < 1:
        raise ValueError(f"model width and depth must be >= 1, got width={width} depth={depth}")
    return [min(int(width) * 2**level, MAX_WIDTH_MULTIPLE * int(width)) for level in range(depth)]


def unet_bottleneck(width: int, depth: int) -> int:
    """Bottleneck filters: one level below the deepest, with the same cap."""
    return min(int(width) * 2 ** int(depth), MAX_WIDTH_MULTIPLE * int(width))


def repeat(value: Any, times: int) -> list[Any]:
    """`[value] * times`: per-level kernels, equal hidden layers."""
    return [value] * int(times)


def register_resolvers() -> None:
    """Register every resolver once (importing the package twice must not fail)."""
    for name, fn in (("model_size", model_size), ("unet_filters", unet_filters),
                     ("unet_bottleneck", unet_bottleneck), ("repeat", repeat),
                     ("lightning_precision", lightning_precision)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
