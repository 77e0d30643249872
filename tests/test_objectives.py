"""Training from configs: optimiser/scheduler groups, the regression and adversarial objectives."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import soundfile as sf
import torch
from hydra.errors import InstantiationException
from omegaconf import OmegaConf
from torch import Tensor

from audio_superres.checkpoint import generator_state_dict, load_checkpoint
from audio_superres.dsp.lowpass import as_lowpass_spec
from audio_superres.errors import ConfigError
from audio_superres.losses import APBWELoss, MelLoss
from audio_superres.models.discriminators import (
    MultiPeriodDiscriminator,
    MultiResolutionSpectrogramDiscriminator,
    SpectrogramDiscriminator,
)
from audio_superres.objectives import (
    AdversarialObjective,
    RegressionObjective,
    feature_matching_loss,
    gan_discriminator_loss,
    gan_generator_loss,
)
from audio_superres.schedules import WarmupCosineLR
from audio_superres.tasks.evaluate import build_for_evaluation
from audio_superres.tasks.train import build_module, clip_under_manual_optimization

from .conftest import REPO, voiced_signal
from .test_configs import compose_train
from .test_e2e import TINY_MODEL, run, train_args

TINY_ADVERSARIAL = [
    "objective=adversarial",
    "objective.warmup_steps=1",
    "objective.discriminators.mpd.periods=[2,3]",
    "objective.discriminators.mpd.channels=[4,8]",
    "objective.discriminators.mrsd.fft_sizes=[128,256]",
    "objective.discriminators.mrsd.hop_sizes=[32,64]",
    "objective.discriminators.mrsd.win_lengths=[128,256]",
    "objective.discriminators.mrsd.kinds=[amplitude,phase]",
    "objective.discriminators.mrsd.channels=4",
    "objective.reconstruction.mel.loss.n_fft=256",
    "objective.reconstruction.mel.loss.hop_length=64",
    "objective.reconstruction.mel.loss.win_length=256",
    "objective.reconstruction.mel.loss.n_mels=32",
    "objective.reconstruction.waveform.weight=1.0",
]


# ---- optimiser and scheduler configs -------------------------------------------------------
def old_cosine_factor(step: int, total: int, warmup: int, floor: float) -> float:
    """The schedule the demo trained with before it became a config (module.py, 2026-11)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def test_demo_experiment_keeps_its_lr_schedule(tmp_path):
    cfg = compose_train(["experiment=demo", "logger=none"], tmp_path)
    module = build_module(cfg)
    opt = module.configure_optimizers()
    optimizer, sched = opt["optimizer"], opt["lr_scheduler"]
    assert isinstance(optimizer, torch.optim.Adam) and sched["interval"] == "step"
    assert optimizer.defaults["lr"] == 2e-3 and optimizer.defaults["betas"] == (0.9, 0.999)
    assert optimizer.defaults["fused"]
    lrs = []
    for _ in range(430):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        sched["scheduler"].step()
    expected = [2e-3 * old_cosine_factor(s, 420, 20, 0.05) for s in range(430)]
    assert lrs == pytest.approx(expected, rel=1e-12)


def test_cosine_schedule_state_is_plain_and_resumes():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = WarmupCosineLR(opt, total_steps=10, warmup_steps=2, min_lr_ratio=0.1)
    for _ in range(4):
        opt.step()
        sched.step()
    state = sched.state_dict()
    assert "lr_lambdas" not in state
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched2 = WarmupCosineLR(opt2, total_steps=10, warmup_steps=2, min_lr_ratio=0.1)
    sched2.load_state_dict(state)
    opt2.step()
    sched2.step()
    opt.step()
    sched.step()
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    with pytest.raises(ValueError, match="max_steps"):
        WarmupCosineLR(opt, total_steps=-1)


def test_command_line_optimizer_and_scheduler_reach_the_optimizer(tmp_path, tiny_corpus):
    overrides = [
        *train_args(tiny_corpus, tmp_path / "run")[1:],
        "optimizer=adamw",
        "scheduler=cosine",
        "optimizer.lr=1e-3",
        "scheduler.warmup_steps=2",
        "trainer.max_steps=3",
        "test_after_fit=false",
        "logger=none",
    ]
    overrides = [o for o in overrides if not o.startswith("hydra.")]
    cfg = compose_train(overrides, tmp_path)
    module = build_module(cfg)
    assert module.hparams["optimizer"]["_target_"] == "torch.optim.AdamW"
    from audio_superres.tasks.train import train

    train(cfg)
    ckpt = load_checkpoint(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt")
    (opt_state,) = ckpt["optimizer_states"]
    group = opt_state["param_groups"][0]
    assert group["initial_lr"] == 1e-3 and group["weight_decay"] == 0.01  # AdamW's config
    assert group["lr"] == pytest.approx(1e-3 * old_cosine_factor(3, 3, 2, 0.0))
    (sched_state,) = ckpt["lr_schedulers"]
    assert sched_state["total_steps"] == 3 and sched_state["warmup_steps"] == 2
    assert ckpt["hyper_parameters"]["scheduler"]["_target_"].endswith("WarmupCosineLR")


def test_exponential_scheduler_steps_per_epoch(tmp_path):
    cfg = compose_train(["scheduler=exponential", "logger=none"], tmp_path)
    opt = build_module(cfg).configure_optimizers()
    assert opt["lr_scheduler"]["interval"] == "epoch"
    assert opt["lr_scheduler"]["scheduler"].gamma == 0.999


def test_scheduler_fields_without_a_scheduler_are_an_error(tmp_path):
    cfg = compose_train(["+scheduler.warmup_steps=3", "logger=none"], tmp_path)
    with pytest.raises(ValueError, match="no _target_"):
        build_module(cfg).configure_optimizers()


# ---- losses and discriminators ------------------------------------------------------------
def test_mel_loss_is_log_mel_l1():
    torch.manual_seed(0)
    x = torch.randn(2, 4096)
    loss = MelLoss(16000, n_fft=512, hop_length=128, win_length=512, n_mels=40)
    assert loss(x, x) == 0
    # a louder copy: every mel bin is above the floor, so log-mel moves by log(2) everywhere
    assert loss(2 * x, x).item() == pytest.approx(math.log(2), rel=1e-4)
    assert loss(x[:, :100], x[:, :100] * 0.5) > 0  # shorter than the FFT: padded, still works


@pytest.mark.parametrize("length", [1000, 1537])
def test_discriminators_give_scores_and_features_for_any_length(length):
    x = torch.randn(3, length)
    mpd = MultiPeriodDiscriminator(periods=[2, 3, 5], channels=[4, 8])
    msd = MultiResolutionSpectrogramDiscriminator(
        [128, 256], [32, 64], [128, 256], kinds=["amplitude", "phase"], channels=4
    )
    for disc, n in ((mpd, 3), (msd, 4)):
        out = disc(x)
        assert len(out) == n
        for score, features in out:
            assert score.shape[0] == 3 and score.ndim == 2 and torch.isfinite(score).all()
            assert len(features) >= 2
    # periods see the signal folded by the period
    assert [d.period for d in mpd.discriminators] == [2, 3, 5]
    assert {d.kind for d in msd.discriminators} == {"amplitude", "phase"}


def test_gan_losses():
    real, fake = torch.tensor([1.0, 0.5]), torch.tensor([0.0, -2.0])
    assert gan_discriminator_loss("lsgan", real, fake) == pytest.approx(0.125 + 2.0)
    assert gan_generator_loss("lsgan", fake) == pytest.approx((1 + 9) / 2)
    assert gan_discriminator_loss("hinge", real, fake) == pytest.approx(0.25 + 0.5)
    assert gan_generator_loss("hinge", fake) == pytest.approx(1.0)
    # AP-BWE's: the discriminator's hinge, the generator's relu(1 - D(G(x)))
    assert gan_discriminator_loss("hinge_margin", real, fake) == pytest.approx(0.25 + 0.5)
    assert gan_generator_loss("hinge_margin", fake) == pytest.approx((1 + 3) / 2)
    assert gan_generator_loss("hinge_margin", torch.tensor([2.0, 0.5])) == pytest.approx(0.25)


def test_adversarial_objective_rejects_unknown_gan_loss(tmp_path):
    cfg = compose_train([*TINY_ADVERSARIAL, "objective.gan_loss=wgan", "logger=none"], tmp_path)
    with pytest.raises(Exception, match="gan_loss must be one of"):
        build_module(cfg)


def assert_two_steps_train(module) -> None:
    """Two optimiser steps on random patches (no validation): the generator's weights move."""
    before = {k: v.clone() for k, v in module.model.state_dict().items()}
    data = torch.utils.data.DataLoader(0.1 * torch.randn(4, 2048), batch_size=2)
    trainer = L.Trainer(
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        limit_val_batches=0,
    )
    trainer.fit(module, train_dataloaders=data)
    assert trainer.global_step == 2  # generator steps, whatever the objective
    after = module.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("model", ["dnn", "tfilm_small", "audiounet_small"])
@pytest.mark.parametrize("objective", ["regression", "adversarial"])
def test_every_model_trains_with_either_objective(model, objective, tmp_path):
    """Two optimiser steps of each generator under each objective; the weights move."""
    extra = TINY_ADVERSARIAL if objective == "adversarial" else []
    size = {
        "dnn": ["model.hidden_sizes=[32]", "model.patch_len=1024"],
        "tfilm_small": [
            "model.filters=[8,16]",
            "model.kernels=[9,5]",
            "model.bottleneck_filters=16",
        ],
        "audiounet_small": TINY_MODEL,
    }[model]
    cfg = compose_train([f"model={model}", *size, *extra, "logger=none"], tmp_path)
    module = build_module(cfg)
    assert isinstance(
        module.objective,
        AdversarialObjective if objective == "adversarial" else RegressionObjective,
    )
    assert_two_steps_train(module)


# ---- AP-BWE's arrangement: losses on the generator's own spectrum -------------------------
TINY_APBWE_MODEL = [
    "model=apbwe_small",
    "model.channels=8",
    "model.layers=1",
    "model.n_fft=128",
    "model.hop_length=16",
    "model.win_length=64",
]
TINY_APBWE = [
    *TINY_APBWE_MODEL,
    "loss=apbwe",
    "loss.n_fft=128",
    "loss.hop_length=16",
    "loss.win_length=64",
]


@pytest.mark.parametrize("objective", ["regression", "adversarial"])
def test_generator_spectrum_reaches_the_loss_and_trains(objective, tmp_path):
    """objective.generator_spectrum=true: the APBWE loss scores the generator's own spectrum
    (the consistency term is then live), under either objective, and two steps train."""
    extra = TINY_ADVERSARIAL if objective == "adversarial" else []
    if objective == "adversarial":  # the loss group's APBWE loss as its only reconstruction
        extra = [*extra, "objective.reconstruction.mel.weight=0"]
    cfg = compose_train(
        [*TINY_APBWE, *extra, "objective.generator_spectrum=true", "logger=none"], tmp_path
    )
    module = build_module(cfg)
    assert module.objective.generator_spectrum
    torch.manual_seed(0)
    with torch.no_grad():  # an inconsistent spectrum: random output layers, not the residual start
        for layer in (module.model.phase_out_real, module.model.phase_out_imag):
            layer.weight.normal_(0, 0.5)
    lr, hr = 0.1 * torch.randn(2, 512), 0.1 * torch.randn(2, 2048)
    pred, spectrum = module.generate(lr)
    assert spectrum is not None and torch.equal(pred, module.model(lr))
    loss_fn = APBWELoss(128, 16, 64, waveform_weight=cfg.loss.waveform_weight)
    on_spectrum = loss_fn(pred, hr, pred_spectrum=spectrum)
    total, _ = module.objective.reconstruction(pred, hr, spectrum)
    assert torch.allclose(total, on_spectrum, rtol=1e-5)
    assert not torch.allclose(total, loss_fn(pred, hr), rtol=1e-3)
    parts = module._component_terms(pred, hr, spectrum)
    consistency = next(v for k, v in parts.items() if k.endswith("consistency"))
    assert consistency > 0
    assert_two_steps_train(module)


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        (["model=audiounet_small", *TINY_MODEL, "loss=apbwe"], "forward_with_spectrum"),
        ([*TINY_APBWE_MODEL, "loss=rmse"], "needs a loss that takes the generator"),
        (
            [*TINY_APBWE, "loss.win_length=128"],
            r"analyses with n_fft/hop/window \(128, 16, 128\).*\(128, 16, 64\)",
        ),
        (
            [*TINY_APBWE_MODEL, "loss=apbwe_mrstft", "loss.terms.apbwe.weight=0"],
            "needs a loss that takes the generator",
        ),
    ],
)
def test_generator_spectrum_needs_a_spectral_model_and_loss(overrides, names, tmp_path):
    cfg = compose_train([*overrides, "objective.generator_spectrum=true"], tmp_path)
    with pytest.raises(InstantiationException, match=names) as caught:  # as Hydra raises it
        build_module(cfg)
    causes, exc = [], caught.value
    while exc is not None:
        causes.append(exc)
        exc = exc.__cause__
    assert any(isinstance(c, ConfigError) for c in causes)


def test_generator_spectrum_is_compiled_with_compile_set(tmp_path):
    """compile=eager + generator_spectrum: the spectrum forward runs compiled, same loss."""
    cfg = compose_train([*TINY_APBWE, "objective.generator_spectrum=true"], tmp_path)
    plain = build_module(cfg)
    compiled = build_module(compose_train(
        [*TINY_APBWE, "objective.generator_spectrum=true", "compile=eager"], tmp_path
    ))  # fmt: skip
    compiled.load_state_dict(plain.state_dict())
    batch = 0.1 * torch.randn(2, 2048)
    torch.manual_seed(0)
    loss_plain = plain.training_step(batch, 0)
    torch.manual_seed(0)
    loss_compiled = compiled.training_step(batch, 0)
    assert plain._compiled_spectrum is None and compiled._compiled_spectrum is not None
    torch.testing.assert_close(loss_compiled, loss_plain)


def test_adversarial_reconstruction_terms_reject_unknown_keys(tmp_path):
    cfg = compose_train([*TINY_ADVERSARIAL, "+objective.reconstruction.mel.wieght=3"], tmp_path)
    with pytest.raises(InstantiationException, match="unknown keys"):
        build_module(cfg)


# ---- the adversarial objective end to end (train.py, evaluate.py as subprocesses) ----------
def read_log(run_dir: Path) -> list[dict[str, str]]:
    (path,) = run_dir.glob("**/metrics.csv")
    return list(csv.DictReader(path.open()))


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["32", "bf16"])
def test_adversarial_trains_and_evaluates_the_generator_only(tiny_corpus, tmp_path, precision):
    """Both precisions, whatever this CPU computes natively: bf16 with the fused Adam and
    gradient clipping (Lightning's mixed-precision plugin refuses that pair; module.py clips)."""
    run_dir = tmp_path / "adv"
    args = train_args(tiny_corpus, run_dir) + TINY_ADVERSARIAL
    args += ["trainer.max_steps=3", "trainer.log_every_n_steps=1", "trainer.gradient_clip_val=1.0"]
    args += [f"precision={precision}"]
    run(args, cwd=tmp_path)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["global_step"] == 3  # generator steps
    rows = read_log(run_dir)
    keys = {k for row in rows for k, v in row.items() if v}
    assert {
        "train/loss",
        "train/recon/mel",
        "train/recon/waveform",
        "train/gan/gen",
        "train/gan/disc",
        "train/feature_matching",
        "train/lr",
        "train/lr_disc",
    } <= keys, keys
    # warm-up: the first step trains on reconstruction alone
    first = next(r for r in rows if r.get("train/loss"))
    assert first["step"] == "0" and not first.get("train/gan/gen")

    ckpt = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert any(k.startswith("objective.discriminators.mpd.") for k in ckpt["state_dict"])
    assert len(ckpt["optimizer_states"]) == 2
    assert ckpt["hyper_parameters"]["objective"]["_target_"].endswith("AdversarialObjective")

    # evaluation builds the generator alone and loads only its weights
    cfg = compose_train([], tmp_path)
    from omegaconf import open_dict

    with open_dict(cfg):
        cfg.ckpt_path = str(run_dir / "checkpoints" / "last.ckpt")
        cfg.model = None
        cfg.data = None
        cfg.lowpass = None
        cfg.ratio = None
        cfg.sample_rate = None
    module, _, _ = build_for_evaluation(cfg)
    assert isinstance(module.objective, RegressionObjective)
    assert not any("discriminators" in k for k in module.state_dict())
    weights = generator_state_dict(ckpt["state_dict"])
    assert all(torch.equal(v, weights[k]) for k, v in module.model.state_dict().items())

    eval_dir = tmp_path / "eval"
    run(
        [
            str(REPO / "evaluate.py"),
            f"ckpt_path={run_dir}/checkpoints/last.ckpt",
            f"hydra.run.dir={eval_dir}",
            "logger=none",
        ],
        cwd=tmp_path,
    )
    assert json.loads((eval_dir / "metrics.json").read_text())["n_files"] == 2


def constant_corpus(root: Path) -> Path:
    """One training utterance exactly one patch long: every batch is the same, so a resumed
    run and an uninterrupted one see the same data whatever the sampler's random stream."""
    rng = np.random.default_rng(0)
    (root / "spk0").mkdir(parents=True)
    sf.write(
        root / "spk0" / "utt0.wav", voiced_signal(rng, 2048 / 16000, 16000), 16000, subtype="FLOAT"
    )
    (root / "spk2").mkdir()
    for i in range(2):
        sf.write(
            root / "spk2" / f"utt{i}.wav", voiced_signal(rng, 1.0, 16000), 16000, subtype="FLOAT"
        )
    return root


@pytest.mark.slow
def test_adversarial_run_resumes_exactly(tmp_path):
    corpus = constant_corpus(tmp_path / "corpus")
    common = [*TINY_ADVERSARIAL, "test_after_fit=false", "trainer.val_check_interval=100"]

    def ckpt_of(run_dir: Path, steps: int, *extra: str) -> dict:
        run(
            train_args(corpus, run_dir) + common + [f"trainer.max_steps={steps}", *extra],
            cwd=tmp_path,
        )
        return load_checkpoint(run_dir / "checkpoints" / "last.ckpt")

    straight = ckpt_of(tmp_path / "straight", 3)
    first = ckpt_of(tmp_path / "resumed", 2)
    assert first["global_step"] == 2
    resumed = ckpt_of(tmp_path / "resumed", 3, "ckpt_path=last")
    assert resumed["global_step"] == straight["global_step"] == 3
    for key, value in straight["state_dict"].items():
        assert torch.allclose(resumed["state_dict"][key], value, rtol=1e-5, atol=1e-7), key
    for opt_straight, opt_resumed in zip(
        straight["optimizer_states"], resumed["optimizer_states"], strict=True
    ):
        for pid, state in opt_straight["state"].items():
            for name, value in state.items():
                assert torch.allclose(
                    opt_resumed["state"][pid][name], value, rtol=1e-5, atol=1e-9
                ), (pid, name)


@pytest.mark.slow
def test_warmup_steps_leave_the_discriminators_untouched(tiny_corpus, tmp_path):
    run_dir = tmp_path / "warm"
    overrides = [
        *TINY_ADVERSARIAL,
        "objective.warmup_steps=5",
        "trainer.max_steps=2",
        "test_after_fit=false",
    ]
    run(train_args(tiny_corpus, run_dir) + overrides, cwd=tmp_path)
    ckpt = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    gen_state, disc_state = ckpt["optimizer_states"]
    assert gen_state["state"] and not disc_state["state"]  # the discriminators' never stepped
    # the discriminators' weights are still their initial ones (same seed, same build order)
    cfg = compose_train(
        [a for a in train_args(tiny_corpus, run_dir)[1:] if not a.startswith("hydra.")] + overrides,
        tmp_path,
    )
    L.seed_everything(cfg.seed, workers=True)
    fresh = build_module(cfg).state_dict()
    disc_keys = [k for k in fresh if k.startswith("objective.discriminators.")]
    assert disc_keys
    for k in disc_keys:
        assert torch.equal(ckpt["state_dict"][k], fresh[k]), k
    model_keys = [k for k in fresh if k.startswith("model.")]
    assert any(not torch.equal(ckpt["state_dict"][k], fresh[k]) for k in model_keys)


# ---- per-discriminator weights and AP-BWE's recipe (objective=adversarial_apbwe) -----------
TINY_DISCRIMINATORS = {
    "mpd": {
        "_target_": "audio_superres.models.discriminators.MultiPeriodDiscriminator",
        "periods": [2, 3],
        "channels": [4, 8],
    },
    "mrsd": {
        "_target_": "audio_superres.models.discriminators.MultiResolutionSpectrogramDiscriminator",
        "fft_sizes": [128, 256],
        "hop_sizes": [32, 64],
        "win_lengths": [128, 256],
        "kinds": ["amplitude", "phase"],
        "channels": 4,
    },
}


def tiny_objective(gan_loss: str = "lsgan", **weights: float) -> AdversarialObjective:
    """An adversarial objective with two tiny discriminators (seeded: equal weights each call)."""
    discriminators = {
        name: {**cfg, **({"weight": weights[name]} if name in weights else {})}
        for name, cfg in TINY_DISCRIMINATORS.items()
    }
    torch.manual_seed(0)
    return AdversarialObjective(
        reconstruction={
            "l1": {"weight": 1.0, "loss": {"_target_": "audio_superres.losses.L1Loss"}}
        },
        discriminators=discriminators,
        disc_optimizer={"_target_": "torch.optim.Adam", "_partial_": True},
        gan_loss=gan_loss,
    )


@pytest.mark.parametrize("gan_loss", ["lsgan", "hinge_margin"])
def test_discriminator_weight_scales_its_gan_fm_and_discriminator_loss(gan_loss):
    """A weight multiplies that discriminator's GAN, feature-matching and discriminator terms
    (all three, and only that discriminator's); each one's unweighted terms are reported."""
    plain = tiny_objective(gan_loss)
    weighted = tiny_objective(gan_loss, mrsd=0.25)
    assert plain.discriminator_weights == {"mpd": 1.0, "mrsd": 1.0}
    assert weighted.discriminator_weights == {"mpd": 1.0, "mrsd": 0.25}
    torch.manual_seed(1)
    real, fake = 0.1 * torch.randn(2, 1024), 0.1 * torch.randn(2, 1024)

    gan, fm, parts = plain.adversarial(real, fake)
    w_gan, w_fm, w_parts = weighted.adversarial(real, fake)
    (mpd_gan, mpd_fm), (sd_gan, sd_fm) = parts["mpd"], parts["mrsd"]
    for part in (mpd_gan, mpd_fm, sd_gan, sd_fm):
        assert part > 0
    torch.testing.assert_close(gan, mpd_gan + sd_gan)
    torch.testing.assert_close(fm, mpd_fm + sd_fm)
    torch.testing.assert_close(w_gan, mpd_gan + 0.25 * sd_gan)
    torch.testing.assert_close(w_fm, mpd_fm + 0.25 * sd_fm)
    for name in parts:  # the logged parts are unweighted
        torch.testing.assert_close(torch.stack(w_parts[name]), torch.stack(parts[name]))

    disc, disc_parts = plain.discriminator_loss(real, fake)
    w_disc, w_disc_parts = weighted.discriminator_loss(real, fake)
    torch.testing.assert_close(disc, disc_parts["mpd"] + disc_parts["mrsd"])
    torch.testing.assert_close(w_disc, disc_parts["mpd"] + 0.25 * disc_parts["mrsd"])
    torch.testing.assert_close(w_disc_parts["mrsd"], disc_parts["mrsd"])

    # the weight reaches the gradients: the weighted discriminator's are scaled, the other's not
    def grads(objective: AdversarialObjective) -> dict[str, Tensor]:
        objective.zero_grad()
        objective.discriminator_loss(real, fake)[0].backward()
        return {n: p.grad.clone() for n, p in objective.named_parameters() if p.grad is not None}

    g_plain, g_weighted = grads(plain), grads(weighted)
    for name, g in g_plain.items():
        scale = 0.25 if name.startswith("discriminators.mrsd.") else 1.0
        torch.testing.assert_close(g_weighted[name], scale * g, rtol=1e-5, atol=1e-8)


def test_default_discriminator_weights_leave_the_losses_bit_for_bit():
    """Weights 1 (the default, or given): the flat sums the objective computed before weights."""
    real, fake = 0.1 * torch.randn(2, 1024), 0.1 * torch.randn(2, 1024)
    for objective in (tiny_objective("hinge"), tiny_objective("hinge", mpd=1.0, mrsd=1.0)):
        gan, fm, _ = objective.adversarial(real, fake)
        disc, _ = objective.discriminator_loss(real, fake)
        with torch.no_grad():
            real_out = objective.discriminate(real)
        old_gan, old_fm = torch.zeros(()), torch.zeros(())
        for (_, r_feats), (f, f_feats) in zip(real_out, objective.discriminate(fake), strict=True):
            old_gan = old_gan + gan_generator_loss("hinge", f)
            old_fm = old_fm + feature_matching_loss(r_feats, f_feats)
        old_disc = torch.zeros(())
        for (r, _), (f, _) in zip(real_out, objective.discriminate(fake), strict=True):
            old_disc = old_disc + gan_discriminator_loss("hinge", r, f)
        assert torch.equal(gan, old_gan) and torch.equal(fm, old_fm)
        assert torch.equal(disc, old_disc)


def test_discriminator_weight_and_null_entries_are_checked():
    with pytest.raises(ValueError, match="weight must be >= 0"):
        tiny_objective(mrsd=-1.0)
    objective = AdversarialObjective(
        reconstruction={},
        discriminators={"mpd": TINY_DISCRIMINATORS["mpd"], "mrsd": None},  # null drops it
        disc_optimizer={"_target_": "torch.optim.Adam", "_partial_": True},
    )
    assert list(objective.discriminators) == ["mpd"]
    with pytest.raises(ValueError, match="at least one discriminator"):
        AdversarialObjective({}, {"mrsd": None}, {"_target_": "torch.optim.Adam"})


def test_apbwe_spectral_discriminators_and_period_features():
    """AP-BWE's MRAD/MRPD form: linear amplitude / phase of a rectangular-window STFT, Vocos's
    stack (strided in time and frequency); its MPD leaves the first layer out of the features."""
    x = 0.1 * torch.randn(2, 2000)
    mrad = SpectrogramDiscriminator(
        256, 64, 256, "amplitude", 4, amplitude="linear", window="rectangular", stack="apbwe"
    )
    assert torch.equal(mrad.window, torch.ones(256))
    spec = torch.stft(x, 256, 64, 256, window=torch.ones(256), return_complex=True)
    torch.testing.assert_close(mrad.spectrum(x)[:, 0], spec.abs().transpose(1, 2))
    score, features = mrad(x)
    assert len(features) == 6  # five convs and the output
    frames, bins = spec.shape[-1], spec.shape[-2]  # 32, 129
    assert features[-1].shape[-2:] == (math.ceil(frames / 8), math.ceil(bins / 32))
    assert score.shape == (2, math.ceil(frames / 8) * math.ceil(bins / 32))
    mrpd = SpectrogramDiscriminator(256, 64, 256, "phase", 4, window="rectangular", stack="apbwe")
    torch.testing.assert_close(
        mrpd.spectrum(x)[:, 0].abs().max(), torch.tensor(math.pi), atol=0.01, rtol=0
    )
    for bad in ({"stack": "vocos"}, {"window": "hamming"}, {"amplitude": "db"}):
        with pytest.raises(ValueError, match="must be one of"):
            SpectrogramDiscriminator(256, 64, 256, **bad)
    full = MultiPeriodDiscriminator([2], [4, 8, 8])
    skipped = MultiPeriodDiscriminator([2], [4, 8, 8], skip_features=1)
    skipped.load_state_dict(full.state_dict())
    (_, f_full), (_, f_skip) = full(x)[0], skipped(x)[0]
    assert len(f_full) == 4 and len(f_skip) == 3
    assert all(torch.equal(a, b) for a, b in zip(f_full[1:], f_skip, strict=True))


APBWE_RECIPE = ["experiment=demo_apbwe", "objective=adversarial_apbwe", "optimizer=adamw_gan"]


def test_adversarial_apbwe_config_is_apbwes_recipe(tmp_path):
    cfg = compose_train([*APBWE_RECIPE, "optimizer.lr=2e-4", "logger=none"], tmp_path)
    module = build_module(cfg)
    objective = module.objective
    assert isinstance(objective, AdversarialObjective) and objective.generator_spectrum
    assert objective.gan_loss == "hinge_margin"
    assert objective.gan_weight == 1.0 and objective.feature_matching_weight == 1.0
    assert objective.discriminator_weights == {"mpd": 1.0, "mrad": 0.1, "mrpd": 0.1}
    # the loss group's AP-BWE loss at weight 1 is the only reconstruction term
    assert {k: v for k, v in objective.weights.items() if v} == {"waveform": 1.0}
    assert isinstance(objective.losses["waveform"], APBWELoss)
    mpd, mrad, mrpd = objective.discriminators.values()
    assert [d.period for d in mpd.discriminators] == [2, 3, 5, 7, 11]
    assert mpd.discriminators[0].layers[0].out_channels == 8  # CPU size
    assert all(d.skip_features == 1 for d in mpd.discriminators)
    for disc, kind in ((mrad, "amplitude"), (mrpd, "phase")):
        assert [d.kind for d in disc.discriminators] == [kind] * 3
        assert [d.n_fft for d in disc.discriminators] == [512, 1024, 2048]
        assert all(torch.equal(d.window, torch.ones(d.win_length)) for d in disc.discriminators)
        assert disc.discriminators[0].layers[0].out_channels == 16
    assert mrad.discriminators[0].amplitude == "linear"
    # gradient norms clipped at 10, each discriminator on its own, with no trainer setting
    assert cfg.trainer.gradient_clip_val is None
    assert module.gradient_clip_val == 10.0 and objective.clip_each_discriminator
    (gen, disc), _ = module.configure_optimizers()
    for opt in (gen, disc):
        assert isinstance(opt, torch.optim.AdamW)
        assert opt.defaults["lr"] == 2e-4 and opt.defaults["betas"] == (0.8, 0.99)
        assert opt.defaults["weight_decay"] == 0.01
    # the HiFi-GAN recipe is unchanged
    hifigan = compose_train(["objective=adversarial"], tmp_path).objective
    assert hifigan.gan_loss == "lsgan" and hifigan.feature_matching_weight == 2.0
    assert "weight" not in hifigan.discriminators.mpd and hifigan.get("gradient_clip_val") is None


def test_adversarial_apbwe_clip_is_one_setting(tmp_path):
    """trainer.gradient_clip_val: the same value is fine, another one is an error."""
    for clip, fails in ((10.0, False), (1.0, True)):
        cfg = compose_train([*APBWE_RECIPE, f"trainer.gradient_clip_val={clip}"], tmp_path)
        module = build_module(cfg)
        if fails:
            with pytest.raises(ConfigError, match="differ"):
                clip_under_manual_optimization(cfg, module)
        else:
            clip_under_manual_optimization(cfg, module)
            assert module.gradient_clip_val == 10.0 and cfg.trainer.gradient_clip_val is None


def test_each_discriminator_is_clipped_on_its_own(tmp_path):
    cfg = compose_train(
        ["objective=adversarial_apbwe", "model=apbwe_small", "loss=apbwe", "logger=none"],
        tmp_path,
    )
    module = build_module(cfg)
    discs = module.objective.discriminators
    for i, disc in enumerate(discs.values()):
        for p in disc.parameters():
            p.grad = torch.full_like(p, 10.0 ** (i + 1))
    module._clip_discriminators(None)
    for disc in discs.values():
        norm = torch.nn.utils.get_total_norm([p.grad for p in disc.parameters()])
        assert norm == pytest.approx(10.0, rel=1e-4)  # each at the clip, not scaled together


@pytest.mark.skipif(
    not (REPO / "conf" / "experiment" / "speech_r4.yaml").is_file(),
    reason="experiment=speech_r4 is not in this checkout",
)
def test_speech_r4_takes_the_apbwe_objective_and_keeps_its_loss(tmp_path):
    cfg = compose_train(["experiment=speech_r4", "objective=adversarial_apbwe"], tmp_path)
    assert cfg.loss.complex_weight == 900 and cfg.loss.waveform_weight == 1000  # apbwe_waveform
    assert as_lowpass_spec(OmegaConf.to_container(cfg.lowpass)).draws_degradations  # robust
    module = build_module(cfg)
    assert module.objective.losses["waveform"].weights["waveform"] == 1000
    assert module.gradient_clip_val == 10.0


@pytest.mark.slow
def test_adversarial_apbwe_fits_three_steps(tiny_corpus, tmp_path):
    """experiment=demo_apbwe objective=adversarial_apbwe, tiny: three generator steps with
    every discriminator live from the first, each one's terms logged."""
    run_dir = tmp_path / "apbwe"
    args = [a for a in train_args(tiny_corpus, run_dir) if a not in TINY_MODEL]
    args += [*APBWE_RECIPE, *TINY_APBWE_MODEL]
    args += ["loss.n_fft=128", "loss.hop_length=16", "loss.win_length=64"]
    args += [
        "objective.discriminators.mpd.periods=[2,3]",
        "objective.discriminators.mpd.channels=[4,8]",
    ]
    for name in ("mrad", "mrpd"):
        args += [
            f"objective.discriminators.{name}.fft_sizes=[128,256]",
            f"objective.discriminators.{name}.hop_sizes=[32,64]",
            f"objective.discriminators.{name}.win_lengths=[128,256]",
            f"objective.discriminators.{name}.channels=4",
        ]
    args += ["trainer.max_steps=3", "trainer.val_check_interval=100", "trainer.log_every_n_steps=1"]
    args += ["test_after_fit=false", "precision=32", "scheduler.warmup_steps=0"]
    run(args, cwd=tmp_path)
    rows = read_log(run_dir)
    keys = {k for row in rows for k, v in row.items() if v}
    for name in ("mpd", "mrad", "mrpd"):
        assert {
            f"train/gan/gen/{name}",
            f"train/feature_matching/{name}",
            f"train/gan/disc/{name}",
        } <= keys
    first = next(r for r in rows if r.get("train/loss"))
    assert first["step"] == "0" and first.get("train/gan/gen")  # no warm-up
    ckpt = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 3
    for opt_state in ckpt["optimizer_states"]:
        group = opt_state["param_groups"][0]
        assert group["betas"] == (0.8, 0.99) and group["weight_decay"] == 0.01
