"""Training objectives (`conf/objective/`): what the generator is trained to minimise.

`RegressionObjective` is one reconstruction loss (automatic optimisation, as in 2017).
`AdversarialObjective` adds discriminators: the module then optimises manually, one
discriminator step and one generator step per batch, each with its own optimiser and schedule.
Objectives are built only for training, from the run's config; evaluation and inference
rebuild the generator alone from a checkpoint.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from audio_superres.checkpoint import instantiate_trusted
from audio_superres.errors import ConfigError
from audio_superres.losses import (
    Spectrum,
    call_loss,
    spectrum_stfts,
    takes_spectrum,
    weighted_term,
)
from audio_superres.models.discriminators import DiscriminatorOutput

GAN_LOSSES = ("lsgan", "hinge", "hinge_margin")


class TrainingObjective(nn.Module, ABC):
    """Base: `manual_optimization` tells the module which loop to run.

    `generator_spectrum`: the module trains the generator through `forward_with_spectrum` and
    hands its own `(log_amplitude, phase)` to the losses that take it (AP-BWE's arrangement:
    amplitude, phase and complex terms on the generator's spectrum, the consistency term tying
    it to the STFT of its waveform); other losses see the waveform.
    """

    manual_optimization = False

    def __init__(self, generator_spectrum: bool = False) -> None:
        super().__init__()
        self.generator_spectrum = bool(generator_spectrum)

    @abstractmethod
    def reconstruction_losses(self) -> dict[str, nn.Module]:
        """The reconstruction losses by name (`""` for the one loss of regression)."""

    @abstractmethod
    def reconstruction(
        self, pred: Tensor, target: Tensor, spectrum: Spectrum | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The weighted reconstruction loss and its unweighted terms (for logging)."""

    def spectrum_stfts(self) -> dict[str, nn.Module]:
        """The STFTs (`n_fft`, `hop_length`, `win_length`) of the losses that take the
        generator's spectrum, by loss name (inside a `WeightedSum` too)."""
        return {
            name: stft
            for key, loss in self.reconstruction_losses().items()
            for name, stft in spectrum_stfts(loss, key or "loss").items()
        }

    def check_generator_spectrum(self) -> None:
        """With `generator_spectrum`, some loss must take the spectrum, or it would go unused."""
        losses = self.reconstruction_losses().values()
        if self.generator_spectrum and not any(takes_spectrum(loss) for loss in losses):
            raise ConfigError(
                "objective.generator_spectrum=true needs a loss that takes the generator's "
                "spectrum (loss=apbwe or loss=apbwe_mrstft); none of "
                f"{sorted(type(loss).__name__ for loss in losses)} does"
            )


class RegressionObjective(TrainingObjective):
    """One reconstruction loss (any `conf/loss/` config): today's and the 2017 training."""

    def __init__(self, loss: Mapping[str, Any], generator_spectrum: bool = False) -> None:
        super().__init__(generator_spectrum)
        self.loss: nn.Module = instantiate_trusted(dict(loss), "objective.loss")
        self.check_generator_spectrum()

    def reconstruction_losses(self) -> dict[str, nn.Module]:
        return {"": self.loss}

    def reconstruction(
        self, pred: Tensor, target: Tensor, spectrum: Spectrum | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        return call_loss(self.loss, pred, target, spectrum), {}


def gan_discriminator_loss(kind: str, real: Tensor, fake: Tensor) -> Tensor:
    """Discriminator loss of one sub-discriminator's scores on real and generated audio."""
    if kind == "lsgan":  # least squares (Mao et al. 2017): real -> 1, fake -> 0
        return (1 - real).pow(2).mean() + fake.pow(2).mean()
    # hinge and hinge_margin (Lim & Ye 2017; MelGAN, AP-BWE): margins at +-1
    return torch.relu(1 - real).mean() + torch.relu(1 + fake).mean()


def gan_generator_loss(kind: str, fake: Tensor) -> Tensor:
    """Generator loss of one sub-discriminator's scores on generated audio: `hinge` is MelGAN's
    -D(G(x)); `hinge_margin` is AP-BWE's (and Vocos's) relu(1 - D(G(x))), which stops pushing a
    score once it passes the real side's margin."""
    if kind == "lsgan":
        return (1 - fake).pow(2).mean()
    if kind == "hinge_margin":
        return torch.relu(1 - fake).mean()
    return -fake.mean()


def feature_matching_loss(real: list[Tensor], fake: list[Tensor]) -> Tensor:
    """Sum over layers of the mean absolute feature difference (HiFi-GAN, MelGAN)."""
    return sum((r.detach() - f).abs().mean() for r, f in zip(real, fake, strict=True))


class AdversarialObjective(TrainingObjective):
    """Weighted reconstruction terms + GAN loss + feature matching against discriminators.

    `reconstruction`: name -> `{weight, loss}` (any loss config; each logged as
    `train/recon/<name>`). `discriminators`: name -> discriminator config
    (`audio_superres.models.discriminators`; null drops one an inherited config has) with an
    optional `weight` (default 1) that scales
    that discriminator's GAN term, its feature-matching term and its own discriminator loss
    (AP-BWE: 0.1 for its amplitude and phase discriminators, 1 for the multi-period one); the
    weighted terms are summed, then `gan_weight` and `feature_matching_weight` scale the sums.
    `gan_loss`: `lsgan`, `hinge` (MelGAN) or `hinge_margin` (AP-BWE). `warmup_steps`: generator
    steps trained on reconstruction alone before the discriminators start (they are neither run
    nor stepped before). `disc_optimizer` and `disc_scheduler`: the discriminators' `_partial_`
    optimiser and scheduler configs (the generator's are the run's `optimizer` and `scheduler`).
    `gradient_clip_val`: the gradient-norm clip of both sides under this objective (null: the
    trainer's `gradient_clip_val`, if any); `clip_each_discriminator`: clip every discriminator's
    gradient norm on its own (AP-BWE) rather than all discriminators' together.
    """

    manual_optimization = True

    def __init__(
        self,
        reconstruction: Mapping[str, Mapping[str, Any]],
        discriminators: Mapping[str, Mapping[str, Any]],
        disc_optimizer: Mapping[str, Any],
        disc_scheduler: Mapping[str, Any] | None = None,
        gan_loss: str = "lsgan",
        gan_weight: float = 1.0,
        feature_matching_weight: float = 2.0,
        warmup_steps: int = 0,
        generator_spectrum: bool = False,
        gradient_clip_val: float | None = None,
        clip_each_discriminator: bool = False,
    ) -> None:
        super().__init__(generator_spectrum)
        if gan_loss not in GAN_LOSSES:
            raise ValueError(f"gan_loss must be one of {GAN_LOSSES}, got {gan_loss!r}")
        if not any(cfg is not None for cfg in (discriminators or {}).values()):
            raise ValueError("the adversarial objective needs at least one discriminator")
        if int(warmup_steps) < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        self.gan_loss = gan_loss
        self.gan_weight = float(gan_weight)
        self.feature_matching_weight = float(feature_matching_weight)
        self.warmup_steps = int(warmup_steps)
        if gradient_clip_val is not None and not float(gradient_clip_val) > 0:
            raise ValueError(f"gradient_clip_val must be > 0 or null, got {gradient_clip_val}")
        self.gradient_clip_val = None if gradient_clip_val is None else float(gradient_clip_val)
        self.clip_each_discriminator = bool(clip_each_discriminator)
        self.weights: dict[str, float] = {}
        losses = {}
        for name, term in reconstruction.items():
            where = f"objective.reconstruction.{name}"
            self.weights[name], loss_cfg = weighted_term(term, where)
            losses[name] = instantiate_trusted(dict(loss_cfg), where)
        self.losses = nn.ModuleDict(losses)
        self.check_generator_spectrum()
        self.discriminator_weights: dict[str, float] = {}
        built = {}
        for name, cfg in discriminators.items():
            if cfg is None:  # `name: null` drops a discriminator an inherited config has
                continue
            cfg = dict(cfg)
            weight = float(cfg.pop("weight", 1.0))
            if not weight >= 0:
                raise ValueError(
                    f"objective.discriminators.{name}.weight must be >= 0, got {weight}"
                )
            self.discriminator_weights[name] = weight
            built[name] = instantiate_trusted(cfg, f"objective.discriminators.{name}")
        self.discriminators = nn.ModuleDict(built)
        self.disc_optimizer = dict(disc_optimizer)
        self.disc_scheduler = dict(disc_scheduler or {})

    def reconstruction_losses(self) -> dict[str, nn.Module]:
        return {name: loss for name, loss in self.losses.items() if self.weights[name]}

    def reconstruction(
        self, pred: Tensor, target: Tensor, spectrum: Spectrum | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        total = pred.new_zeros((), dtype=torch.float32)
        terms = {}
        for name, loss in self.reconstruction_losses().items():
            value = call_loss(loss, pred, target, spectrum)
            total = total + self.weights[name] * value
            terms[name] = value.detach()
        return total, terms

    def discriminate(self, x: Tensor) -> DiscriminatorOutput:
        """Every sub-discriminator's `(score, features)` on `x`."""
        return [out for d in self.discriminators.values() for out in d(x)]

    def discriminator_loss(self, real: Tensor, fake: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The discriminators' loss, each discriminator's scaled by its weight, and each one's
        unweighted loss (detached, for logging); `fake` must come detached from the generator."""
        loss = real.new_zeros((), dtype=torch.float32)
        parts = {}
        for name, disc in self.discriminators.items():
            weight = self.discriminator_weights[name]
            part = real.new_zeros((), dtype=torch.float32)
            for (r, _), (f, _) in zip(disc(real), disc(fake), strict=True):
                term = gan_discriminator_loss(self.gan_loss, r, f)
                loss = loss + weight * term  # one running sum: weight 1 leaves it bit-for-bit
                part = part + term.detach()
            parts[name] = part
        return loss, parts

    def adversarial(
        self, real: Tensor, fake: Tensor
    ) -> tuple[Tensor, Tensor, dict[str, tuple[Tensor, Tensor]]]:
        """The generator's GAN and feature-matching losses, each discriminator's scaled by its
        weight (before `gan_weight` / `feature_matching_weight`), and each discriminator's
        unweighted `(gan, fm)` (detached, for logging)."""
        gan = real.new_zeros((), dtype=torch.float32)
        fm = real.new_zeros((), dtype=torch.float32)
        parts = {}
        for name, disc in self.discriminators.items():
            weight = self.discriminator_weights[name]
            with torch.no_grad():
                real_out = disc(real)
            part_gan = real.new_zeros((), dtype=torch.float32)
            part_fm = real.new_zeros((), dtype=torch.float32)
            for (_, r_feats), (f, f_feats) in zip(real_out, disc(fake), strict=True):
                g = gan_generator_loss(self.gan_loss, f)
                m = feature_matching_loss(r_feats, f_feats)
                gan = gan + weight * g
                fm = fm + weight * m
                part_gan = part_gan + g.detach()
                part_fm = part_fm + m.detach()
            parts[name] = (part_gan, part_fm)
        return gan, fm, parts
