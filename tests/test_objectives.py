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

from audio_superres.checkpoint import generator_state_dict, load_checkpoint
from audio_superres.errors import ConfigError
from audio_superres.losses import APBWELoss, MelLoss
from audio_superres.models.discriminators import (
    MultiPeriodDiscriminator,
    MultiResolutionSpectrogramDiscriminator,
)
from audio_superres.objectives import (
    AdversarialObjective,
    RegressionObjective,
    gan_discriminator_loss,
    gan_generator_loss,
)
from audio_superres.schedules import WarmupCosineLR
from audio_superres.tasks.evaluate import build_for_evaluation
from audio_superres.tasks.train import build_module

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
