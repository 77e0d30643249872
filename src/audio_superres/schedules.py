"""Learning-rate schedules torch does not have (the rest are `torch.optim.lr_scheduler` configs)."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from audio_superres.errors import ConfigError


class WarmupCosineLR(LambdaLR):
    """Linear warm-up over `warmup_steps`, then a half cosine from the base lr to a floor.

    The factor on the base lr is `(step + 1) / warmup_steps` during warm-up, then
    `min_lr_ratio + (1 - min_lr_ratio) * (1 + cos(pi * progress)) / 2` with `progress` going
    from 0 to 1 over the remaining `total_steps - warmup_steps` steps (held at the floor after).
    One `step()` per optimiser step. torch's `SequentialLR(LinearLR, CosineAnnealingLR)` needs an
    absolute floor and two schedulers in a config; this keeps the floor relative to the lr.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        total_steps: int,
        warmup_steps: int = 0,
        min_lr_ratio: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        if total_steps is None or int(total_steps) <= 0:
            raise ConfigError(
                f"scheduler: total_steps must be a positive number of steps, got {total_steps} "
                "(the cosine schedule follows trainer.max_steps: set it, or scheduler.total_steps)"
            )
        if not 0 <= int(warmup_steps) < int(total_steps):
            raise ConfigError(
                f"scheduler: need 0 <= warmup_steps < total_steps, got warmup_steps="
                f"{warmup_steps}, total_steps={total_steps} (= trainer.max_steps unless set): "
                "lower scheduler.warmup_steps or raise trainer.max_steps"
            )
        if not 0.0 <= float(min_lr_ratio) <= 1.0:
            raise ConfigError(f"scheduler: min_lr_ratio must be in [0, 1], got {min_lr_ratio}")
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.min_lr_ratio = float(min_lr_ratio)
        super().__init__(optimizer, self.factor, last_epoch=last_epoch)

    def factor(self, step: int) -> float:
        """The multiplier of the base lr after `step` optimiser steps."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        floor = self.min_lr_ratio
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    def state_dict(self) -> dict:
        # LambdaLR stores lambdas only when they are callable objects; the bound method is
        # rebuilt from the constructor arguments, so only plain numbers go into checkpoints.
        return {k: v for k, v in super().state_dict().items() if k != "lr_lambdas"}

    def load_state_dict(self, state_dict: dict) -> None:
        state = dict(state_dict)
        state.pop("lr_lambdas", None)
        self.__dict__.update(state)
