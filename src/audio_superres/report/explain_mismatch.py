"""Why a model collapses on low-res input not made as in training (issue 20), measured.

    python -m audio_superres.report.explain_mismatch --ckpt CKPT [--ckpt CKPT2 ...] \
        --files DIR -o OUT [--name NAME ...] [--filters chebyshev butterworth bessel elliptic none]

For every checkpoint and every test filter (REFERENCE section 3 defaults: order 8, cutoff 0.8 of
the low-res Nyquist, zero phase; `none` = `y[::r]`, aliased), on every audio file of DIR:

(a) the low-res input's average power spectrum between 0.5 and 1.0 of the low-res Nyquist, against
    the input the training filter makes of the same files (`lowres_spectrum.png`, table (a));
(b) the error energy `|FFT(y - yhat)|^2` in bands of `--band-hz` (summed over files; the bands sum
    to the total error energy), model and cubic (`bands_<name>.png`, table (b));
(c) ablations (`ablations.png`, table (c)), each through `SuperResolver` (the one inference path):
    - `plain`: the input as made (input_conditioning=off);
    - `no_images`: the same, with the model's input upsampler followed by a brick-wall at the
      low-res Nyquist (the cubic spline's images above it removed; near identity for `sinc`);
    - `top_train`: the input's top band (0.8-1.0 of the low-res Nyquist) scaled, bin by bin, to
      the level the training filter leaves there on the same file (the rest untouched);
    - `top_none`: the reverse, the top band raised to the aliased input's level (on the training
      filter's input: does the top band's level alone cause the collapse?);
    - `refilter`: input_conditioning=always (the training filter's shape at the low-res rate);
    - `auto`: input_conditioning=auto (re-filter only when the top band says so).
Every model input is made by `dsp.lowpass.make_lowres`, the baseline is `dsp.cubic.cubic_upsample`,
SNR/LSD are `metrics.compute_metrics` (per file, then averaged). Writes `report.md`,
`results.json` and the PNGs into OUT. Nothing is random (`--seed` seeds torch all the same).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import shlex
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from audio_superres.data.audio_io import read_audio
from audio_superres.dsp.bandwidth import power_spectrum
from audio_superres.dsp.cubic import cubic_upsample
from audio_superres.dsp.lowpass import (
    LowpassSpec,
    as_lowpass_spec,
    crop_to_multiple,
    describe_lowpass,
    make_lowres,
)
from audio_superres.inference import InferenceSettings
from audio_superres.metrics import compute_metrics
from audio_superres.resolver import SuperResolver
from audio_superres.utils import atomic_write_text

__all__ = [
    "BandLimitedUpsample",
    "VARIANTS",
    "analyse",
    "band_energies",
    "main",
    "set_top_band",
]

log = logging.getLogger(__name__)

DEFAULT_FILTERS = ("chebyshev", "butterworth", "bessel", "elliptic", "none")
VARIANTS = ("plain", "no_images", "top_train", "top_none", "refilter", "auto")
TOP_BAND = (0.8, 1.0)  # fractions of the low-res Nyquist: where the training filter rolls off
NEAR_NYQUIST = (0.8, 1.2)  # the window around the low-res Nyquist the error is reported in
IMAGE = (2.8, 3.2)  # its first image above: the cubic spline repeats the LR band around 2 x Nyquist
SPECTRUM_FFT = 256  # Welch segment at the low-res rate for (a) and the top-band gains
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


# ---- measurements -----------------------------------------------------------------------------


def band_energies(x: np.ndarray, sample_rate: float, edges: np.ndarray) -> np.ndarray:
    """Energy of `x` `(n,)` in each band `[edges[i], edges[i+1])` Hz (the last band includes its
    upper edge), from one whole-signal FFT: by Parseval the bands sum to `sum(x**2)` when the edges
    span 0 to the Nyquist."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-1]
    power = np.abs(np.fft.rfft(x)) ** 2 / n
    power[1 : (n + 1) // 2] *= 2.0  # the negative frequencies (DC and an even n's Nyquist: once)
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    band = np.searchsorted(edges, freqs, side="right") - 1
    band[freqs == edges[-1]] = len(edges) - 2
    keep = (band >= 0) & (band < len(edges) - 1)
    return np.bincount(band[keep], weights=power[keep], minlength=len(edges) - 1)


def set_top_band(
    x: np.ndarray, reference: np.ndarray, band: tuple[float, float] = TOP_BAND
) -> np.ndarray:
    """`x` (a low-res signal) with its spectrum in `band` (fractions of its Nyquist) scaled bin by
    bin to the level `reference` (another low-res version of the same signal) has there, by the
    ratio of their Welch spectra (`dsp.bandwidth.power_spectrum`); zero phase, the rest
    untouched."""
    x = np.asarray(x, dtype=np.float64)
    px = power_spectrum(x, 2.0, SPECTRUM_FFT)  # rate 2: frequencies in fractions of the Nyquist
    pr = power_spectrum(np.asarray(reference, dtype=np.float64), 2.0, SPECTRUM_FFT)
    tiny = 1e-30
    gain = np.sqrt((pr.power + tiny) / (px.power + tiny))
    spectrum = np.fft.rfft(x)
    f = np.fft.rfftfreq(x.shape[-1], 0.5)
    inside = (f >= band[0]) & (f <= band[1])
    spectrum[inside] *= np.interp(f[inside], px.freqs, gain)
    return np.fft.irfft(spectrum, n=x.shape[-1])


class BandLimitedUpsample(nn.Module):
    """A model's input upsampler followed by a brick-wall low-pass at the low-res Nyquist (FFT
    bins above it zeroed): the same upsampler without its images (ablation `no_images`)."""

    def __init__(self, upsample: nn.Module, ratio: int) -> None:
        super().__init__()
        self.inner, self.ratio = upsample, int(ratio)

    def forward(self, x: Tensor) -> Tensor:
        y = self.inner(x)
        n = y.shape[-1]
        spectrum = torch.fft.rfft(y.double(), dim=-1)
        f = torch.fft.rfftfreq(n, device=y.device)  # cycles per HR sample; LR Nyquist: 0.5 / r
        spectrum[..., f > 0.5 / self.ratio] = 0
        return torch.fft.irfft(spectrum, n=n, dim=-1).to(y.dtype)


def without_images(model: nn.Module, ratio: int) -> nn.Module | None:
    """A copy of `model` whose `upsample` is band-limited (`BandLimitedUpsample`); None for a
    model without an input upsampler."""
    if not isinstance(getattr(model, "upsample", None), nn.Module):
        return None
    clone = copy.deepcopy(model)
    clone.upsample = BandLimitedUpsample(clone.upsample, ratio)
    return clone.eval()


def concrete_filter(lowpass: Any) -> LowpassSpec | None:
    """The training filter when it is one filter; None for a distribution (`random`, `robust`),
    whose level in the top band is not one level."""
    spec = as_lowpass_spec(lowpass)
    return None if spec.kind == "random" else spec


TOP_HALVES = {"0.8-0.9": (0.8, 0.9), "0.9-1.0": (0.9, 1.0)}


def top_band_levels(
    fraction: np.ndarray, spectra: dict[str, Any], references: dict[str, Any]
) -> dict[str, dict[str, dict[str, float]]]:
    """filter -> training filter -> {half of the top band: mean over its bins of the filter's
    input level over the training input's, dB}: the log-amplitude the model sees there, against
    what it was trained on (a mean of dB, not a ratio of sums, which the band's loud lower edge
    would dominate)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, p in spectra.items():
        for key, ref in references.items():
            levels = {}
            for half, (lo, hi) in TOP_HALVES.items():
                inside = (fraction >= lo) & (fraction <= hi)
                ratio = (np.asarray(p)[inside] + 1e-30) / (np.asarray(ref)[inside] + 1e-30)
                levels[half] = float(np.mean(10 * np.log10(ratio)))
            out.setdefault(name, {})[key] = levels
    return out


def _db(num: float, den: float) -> float:
    return float(10.0 * math.log10(max(num, 1e-300) / max(den, 1e-300)))


# ---- the analysis -----------------------------------------------------------------------------


@dataclass
class Clip:
    name: str
    hr: np.ndarray  # (n,) float32, cropped to a multiple of the ratio


def load_clips(folder: Path, ratio: int, sample_rate: int) -> list[Clip]:
    """Every audio file of `folder` (sorted), first channel, cropped to a multiple of `ratio`."""
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise SystemExit(f"Error: {folder}: no audio files ({', '.join(AUDIO_SUFFIXES)})")
    clips = []
    for path in files:
        audio, rate = read_audio(path)
        if rate != sample_rate:
            raise SystemExit(
                f"Error: {path}: {rate} Hz, the models' high-res rate is {sample_rate}"
            )
        hr = crop_to_multiple(torch.from_numpy(audio[0]), ratio).numpy()
        clips.append(Clip(path.name, np.ascontiguousarray(hr, dtype=np.float32)))
    return clips


def lowres_of(clip: Clip, ratio: int, spec: LowpassSpec, sample_rate: int) -> np.ndarray:
    y = torch.from_numpy(clip.hr)[None]
    return make_lowres(y, ratio, spec, sample_rate=sample_rate)[0].numpy()


def analyse(
    resolvers: dict[str, SuperResolver],
    clips: list[Clip],
    filters: list[LowpassSpec],
    filter_names: list[str],
    band_hz: float = 200.0,
    variants: tuple[str, ...] = VARIANTS,
) -> dict[str, Any]:
    """Everything the report shows, as plain data (`results.json`)."""
    first = next(iter(resolvers.values()))
    ratio, rate = first.ratio, first.sample_rate
    lr_rate, nyq = rate // ratio, rate / ratio / 2
    edges = np.arange(0.0, rate / 2 + band_hz / 2, band_hz)
    edges[-1] = rate / 2
    near = [
        i
        for i in range(len(edges) - 1)
        if edges[i] >= NEAR_NYQUIST[0] * nyq - 1e-9 and edges[i + 1] <= NEAR_NYQUIST[1] * nyq + 1e-9
    ]
    image = [
        i
        for i in range(len(edges) - 1)
        if edges[i] >= IMAGE[0] * nyq - 1e-9 and edges[i + 1] <= IMAGE[1] * nyq + 1e-9
    ]
    top_hr = np.array([0.0, TOP_BAND[0] * nyq, TOP_BAND[1] * nyq, rate / 2])  # for output levels

    lowres = {
        name: [lowres_of(c, ratio, spec, rate) for c in clips]
        for name, spec in zip(filter_names, filters, strict=True)
    }
    aliased = [lowres_of(c, ratio, LowpassSpec(kind="none"), rate) for c in clips]

    # (a) the low-res spectra, averaged over files (power per sample, Welch)
    spectra = {}
    for name, xs in lowres.items():
        ps = [power_spectrum(x, lr_rate, SPECTRUM_FFT) for x in xs]
        spectra[name] = np.mean([p.power for p in ps], axis=0)
    freqs = np.fft.rfftfreq(SPECTRUM_FFT, 1.0 / lr_rate)
    trained_specs = {m: concrete_filter(r.training_lowpass) for m, r in resolvers.items()}
    references = {}
    for spec in trained_specs.values():
        if spec is not None:
            key = describe_lowpass(spec)
            if key not in references:
                xs = [lowres_of(c, ratio, spec, rate) for c in clips]
                references[key] = (spec, xs)
    ref_spectra = {
        key: np.mean([power_spectrum(x, lr_rate, SPECTRUM_FFT).power for x in xs], axis=0)
        for key, (_spec, xs) in references.items()
    }
    top_levels = top_band_levels(freqs / nyq, spectra, ref_spectra)

    # (b) and (c)
    models: dict[str, Any] = {}
    for mname, resolver in resolvers.items():
        trained = trained_specs[mname]
        train_lr = references[describe_lowpass(trained)][1] if trained is not None else None
        imageless = without_images(resolver.model, ratio)
        out: dict[str, Any] = {
            "describe": resolver.describe(),
            "checkpoint": resolver.checkpoint,
            "training_filter": describe_lowpass(resolver.training_lowpass),
            "upsampler": getattr(resolver.model, "upsampler", None),
            "filters": {},
        }
        runners = {
            "plain": replace(resolver, input_conditioning="off"),
            "refilter": replace(resolver, input_conditioning="always"),
            "auto": replace(resolver, input_conditioning="auto"),
        }
        if imageless is not None:
            runners["no_images"] = replace(resolver, model=imageless, input_conditioning="off")
        for fname in filter_names:
            row: dict[str, Any] = {"variants": {}}
            cubic_bands = np.zeros(len(edges) - 1)
            signal_energy = 0.0
            cubic_scores = []
            cubic_levels, target_top = np.zeros(3), np.zeros(3)
            for k, clip in enumerate(clips):
                x = lowres[fname][k]
                y = torch.from_numpy(clip.hr)
                c = cubic_upsample(torch.from_numpy(x)[None], ratio)[0]
                cubic_scores.append(
                    {k2: float(v) for k2, v in compute_metrics(c, y, ratio).items()}
                )
                cubic_bands += band_energies((y - c).numpy(), rate, edges)
                cubic_levels += band_energies(c.numpy(), rate, top_hr)
                target_top += band_energies(clip.hr, rate, top_hr)
                signal_energy += float(np.sum(clip.hr.astype(np.float64) ** 2))
            row["cubic"] = _summary(cubic_scores, cubic_bands, None, signal_energy, near, image)
            row["cubic"]["top_out_vs_target_db"] = _db(cubic_levels[1], target_top[1])
            row["signal_energy"] = signal_energy
            for variant in variants:
                inputs: list[np.ndarray] | None = lowres[fname]
                runner = runners.get(variant, runners["plain"])
                if variant == "no_images" and imageless is None:
                    inputs = None
                elif variant == "top_train":
                    inputs = (
                        None
                        if train_lr is None
                        else [
                            set_top_band(x, t) for x, t in zip(lowres[fname], train_lr, strict=True)
                        ]
                    )
                elif variant == "top_none":
                    inputs = [
                        set_top_band(x, a) for x, a in zip(lowres[fname], aliased, strict=True)
                    ]
                if inputs is None:
                    row["variants"][variant] = None
                    continue
                scores, bands, levels = [], np.zeros(len(edges) - 1), np.zeros(3)
                for k, clip in enumerate(clips):
                    lr = np.asarray(inputs[k], dtype=np.float32)
                    yhat, _ = runner.sr(lr, lr_rate)
                    yhat_t = torch.from_numpy(np.asarray(yhat, dtype=np.float32))
                    y = torch.from_numpy(clip.hr)
                    scores.append(
                        {k2: float(v) for k2, v in compute_metrics(yhat_t, y, ratio).items()}
                    )
                    bands += band_energies((y - yhat_t).numpy(), rate, edges)
                    levels += band_energies(yhat_t.numpy(), rate, top_hr)
                summary = _summary(scores, bands, cubic_bands, signal_energy, near, image)
                summary["top_out_vs_target_db"] = _db(levels[1], target_top[1])
                row["variants"][variant] = summary
                log.info(
                    "%s %s %s: SNR %.2f dB (cubic %.2f)",
                    mname,
                    fname,
                    variant,
                    summary["snr"],
                    row["cubic"]["snr"],
                )
            out["filters"][fname] = row
        models[mname] = out
    return {
        "ratio": ratio,
        "sample_rate": rate,
        "band_edges_hz": edges.tolist(),
        "near_nyquist_hz": [NEAR_NYQUIST[0] * nyq, NEAR_NYQUIST[1] * nyq],
        "top_band_hz": [TOP_BAND[0] * nyq, TOP_BAND[1] * nyq],
        "image_window_hz": [IMAGE[0] * nyq, IMAGE[1] * nyq],
        "files": [{"name": c.name, "seconds": len(c.hr) / rate} for c in clips],
        "filters": {n: describe_lowpass(s) for n, s in zip(filter_names, filters, strict=True)},
        "lowres_spectrum": {
            "freqs_hz": freqs.tolist(),
            "power": {n: p.tolist() for n, p in spectra.items()},
            "training": {k: p.tolist() for k, p in ref_spectra.items()},
            "top_band_db_vs_training": top_levels,
        },
        "models": models,
    }


def _summary(
    scores: list[dict[str, float]],
    bands: np.ndarray,
    cubic_bands: np.ndarray | None,
    signal_energy: float,
    near: list[int],
    image: list[int],
) -> dict[str, Any]:
    total = float(bands.sum())
    out = {
        key: float(np.mean([s[key] for s in scores])) for key in ("snr", "lsd", "lsd_hf", "si_sdr")
    }
    out.update(
        snr_per_file=[s["snr"] for s in scores],
        band_error=bands.tolist(),
        error_energy=total,
        pooled_snr=_db(signal_energy, total),
        near_nyquist_fraction=float(bands[near].sum() / total) if total > 0 else 0.0,
        image_fraction=float(bands[image].sum() / total) if total > 0 else 0.0,
    )
    if cubic_bands is not None:
        # the excess error over cubic's, and the share of it around the low-res Nyquist
        excess = bands - cubic_bands
        out["excess_near_nyquist_fraction"] = (
            float(excess[near].sum() / excess.sum()) if excess.sum() > 0 else float("nan")
        )
    return out


# ---- plots and the report ---------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_lowres_spectrum(results: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    spec = results["lowres_spectrum"]
    f = np.asarray(spec["freqs_hz"])
    nyq = results["sample_rate"] / results["ratio"] / 2
    keep = f >= 0.5 * nyq
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), dpi=80)
    refs = spec["training"]
    for name, p in spec["power"].items():
        axes[0].plot(f[keep] / nyq, 10 * np.log10(np.asarray(p)[keep] + 1e-20), label=name, lw=1)
    for key, p in refs.items():
        axes[0].plot(
            f[keep] / nyq,
            10 * np.log10(np.asarray(p)[keep] + 1e-20),
            "k--",
            lw=1,
            label=f"training: {key.split(' ')[0]}",
        )
        ref = np.asarray(p)[keep] + 1e-20
        for name, q in spec["power"].items():
            axes[1].plot(
                f[keep] / nyq, 10 * np.log10((np.asarray(q)[keep] + 1e-20) / ref), lw=1, label=name
            )
        break  # one training filter for the differences
    for ax in axes:
        ax.axvspan(*TOP_BAND, color="0.9")
        ax.set_xlabel("fraction of the low-res Nyquist")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("low-res input power (dB)")
    axes[0].set_title("mean spectrum of the low-res input", fontsize=9)
    axes[1].set_ylabel("dB over the training filter's input")
    axes[1].set_title("level against the training input", fontsize=9)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_bands(results: dict[str, Any], name: str, path: Path) -> None:
    plt = _pyplot()
    model = results["models"][name]
    edges = np.asarray(results["band_edges_hz"])
    centres = (edges[:-1] + edges[1:]) / 2 / 1000
    filters = list(model["filters"])
    fig, axes = plt.subplots(
        1, len(filters), figsize=(2.3 * len(filters) + 0.6, 2.8), dpi=80, sharey=True, squeeze=False
    )
    nyq = results["sample_rate"] / results["ratio"] / 2000
    for ax, fname in zip(axes[0], filters, strict=True):
        row = model["filters"][fname]
        energy = row["signal_energy"]
        for label, data, style in (
            ("cubic", row["cubic"], "k-"),
            ("model", row["variants"].get("plain"), "C3-"),
            ("model, refilter", row["variants"].get("refilter"), "C0--"),
        ):
            if data is None:
                continue
            db = 10 * np.log10(np.asarray(data["band_error"]) / energy + 1e-20)
            ax.plot(centres, db, style, lw=1, label=label)
        ax.axvline(nyq, color="0.6", lw=0.8)
        ax.set_title(fname, fontsize=9)
        ax.set_xlabel("kHz")
        ax.set_ylim(-80, 30)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("error energy per band (dB re signal)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{name}: error by {edges[1] - edges[0]:g} Hz band", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_ablations(results: dict[str, Any], path: Path, variants: tuple[str, ...]) -> None:
    plt = _pyplot()
    names = list(results["models"])
    fig, axes = plt.subplots(
        len(names), 1, figsize=(8, 2.2 * len(names) + 0.4), dpi=80, squeeze=False
    )
    for ax, name in zip(axes[:, 0], names, strict=True):
        filters = results["models"][name]["filters"]
        x = np.arange(len(filters))
        width = 0.8 / len(variants)
        for j, v in enumerate(variants):
            vals = [(filters[f]["variants"].get(v) or {}).get("snr", np.nan) for f in filters]
            ax.bar(
                x + (j - (len(variants) - 1) / 2) * width,
                np.maximum(vals, -30),
                width,
                label=v,
                color=f"C{j}",
            )
        cubic = [filters[f]["cubic"]["snr"] for f in filters]
        ax.hlines(cubic, x - 0.42, x + 0.42, colors="k", lw=1.5, label="cubic")
        ax.set_xticks(x, list(filters), fontsize=8)
        ax.set_ylim(-30, 20)
        ax.axhline(0, color="0.5", lw=0.6)
        ax.set_ylabel("SNR dB", fontsize=8)
        ax.set_title(name, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, ncol=len(variants) + 1, loc="upper center")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / (2.2 * len(names) + 0.4)))
    fig.savefig(path)
    plt.close(fig)


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _pct(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.1%}"


def write_report(results: dict[str, Any], out: Path, command: str, seed: int) -> str:
    variants = results["variants"]
    nyq = results["sample_rate"] / results["ratio"] / 2
    top, near = results["top_band_hz"], results["near_nyquist_hz"]
    lines = [
        "# Why models collapse on input not made as in training (measured)",
        "",
        f"Command: `{command}`",
        "",
        f"Seed: {seed} (torch; nothing is drawn). Ratio {results['ratio']}, "
        f"{results['sample_rate']} Hz; low-res Nyquist {nyq:g} Hz; "
        f"top band {top[0]:g}-{top[1]:g} Hz; near-Nyquist window {near[0]:g}-{near[1]:g} Hz.",
        "",
        "Files: " + ", ".join(f"{f['name']} ({f['seconds']:.2f} s)" for f in results["files"]),
        "",
        "Filters: " + "; ".join(f"`{n}` = {d}" for n, d in results["filters"].items()),
        "",
        "Models:",
        "",
    ]
    for name, m in results["models"].items():
        lines.append(
            f"- `{name}`: {m['describe']}, upsampler {m['upsampler']}; `{m['checkpoint']}`"
        )
    spec = results["lowres_spectrum"]["top_band_db_vs_training"]
    refs = sorted({k for v in spec.values() for k in v})
    lines += [
        "",
        "## (a) Low-res input level in the top band against the training input",
        "",
        "Mean over the band's bins of the input's level over the training filter's input, dB "
        "(Welch, all files averaged), in each half of the top band (fractions of the low-res "
        "Nyquist).",
        "",
        "| test filter | "
        + " | ".join(f"{h} over {r.split(' ')[0]}" for r in refs for h in TOP_HALVES)
        + " |",
        "|---|" + "---:|" * (len(refs) * len(TOP_HALVES)),
    ]
    for fname, levels in spec.items():
        cells = [_fmt(levels.get(r, {}).get(h)) for r in refs for h in TOP_HALVES]
        lines.append(f"| {fname} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## (b) Where the error is",
        "",
        "Share of the error energy (all files pooled) in the near-Nyquist window; "
        "the image window (the first image of that band, mirrored about the low-res rate); "
        "`excess` = share of the model's error above cubic's that lies near the Nyquist "
        "(n/a where the model's error is below cubic's); "
        "`top out/target` = the model output's level in the top band over the true "
        "high-res signal's (dB).",
        "",
        "| model | test filter | SNR model (cubic) | near-Nyquist share model (cubic) | "
        "image-window share model (cubic) | excess near Nyquist | "
        "top out/target dB model (cubic) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, m in results["models"].items():
        for fname, row in m["filters"].items():
            p, c = row["variants"]["plain"], row["cubic"]
            lines.append(
                f"| {name} | {fname} | {_fmt(p['snr'])} ({_fmt(c['snr'])}) | "
                f"{p['near_nyquist_fraction']:.1%} ({c['near_nyquist_fraction']:.1%}) | "
                f"{p['image_fraction']:.1%} ({c['image_fraction']:.1%}) | "
                f"{_pct(p['excess_near_nyquist_fraction'])} | "
                f"{_fmt(p['top_out_vs_target_db'], 1)} ({_fmt(c['top_out_vs_target_db'], 1)}) |"
            )
    lines += [
        "",
        "## (c) Ablations: SNR dB (mean over files), LSD in brackets",
        "",
        "| model | test filter | cubic | " + " | ".join(variants) + " |",
        "|---|---|---:|" + "---:|" * len(variants),
    ]
    for name, m in results["models"].items():
        for fname, row in m["filters"].items():
            cells = []
            for v in variants:
                d = row["variants"].get(v)
                cells.append("n/a" if d is None else f"{d['snr']:.2f} ({d['lsd']:.2f})")
            c = row["cubic"]
            lines.append(
                f"| {name} | {fname} | {c['snr']:.2f} ({c['lsd']:.2f}) | "
                + " | ".join(cells)
                + " |"
            )
    lines += ["", "![low-res spectra](lowres_spectrum.png)", "", "![ablations](ablations.png)", ""]
    lines += [f"![{n}](bands_{n}.png)" for n in results["models"]]
    text = "\n".join(lines) + "\n"
    atomic_write_text(out / "report.md", text)
    return text


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--ckpt",
        action="append",
        default=[],
        type=Path,
        help="a checkpoint (repeat for several models)",
    )
    parser.add_argument(
        "--name",
        action="append",
        default=None,
        help="a short name per --ckpt, in order (default: the run folder's name)",
    )
    parser.add_argument(
        "--files",
        default=None,
        type=Path,
        help="a folder of high-res audio files at the models' rate",
    )
    parser.add_argument("-o", "--out", required=True, type=Path)
    parser.add_argument(
        "--replot",
        type=Path,
        default=None,
        help="a results.json of an earlier run: rewrite the report and plots from it (no models)",
    )
    parser.add_argument(
        "--filters",
        nargs="+",
        default=list(DEFAULT_FILTERS),
        help="test filters: lowpass kind names (REFERENCE defaults)",
    )
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--band-hz", type=float, default=200.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--chunk",
        type=int,
        default=1 << 16,
        help="LR samples per inference chunk (default: whole clips)",
    )
    args = parser.parse_args(argv)
    if args.replot is not None:
        return replot(args.replot, args.out)
    if not args.ckpt or args.files is None:
        parser.error("give --ckpt (one or more) and --files (or --replot RESULTS_JSON)")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("audio_superres.resolver", "audio_superres.inference"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    torch.manual_seed(args.seed)
    names = args.name or []
    if names and len(names) != len(args.ckpt):
        parser.error("give one --name per --ckpt")
    settings = InferenceSettings(
        chunk=args.chunk, overlap=min(1024, args.chunk // 4), precision="32"
    )
    resolvers = {}
    for k, ckpt in enumerate(args.ckpt):
        name = names[k] if names else ckpt.resolve().parent.parent.name
        resolvers[name] = SuperResolver.from_checkpoint(
            ckpt, device="cpu", precision="32", settings=settings
        )
    rates = {(r.ratio, r.sample_rate) for r in resolvers.values()}
    if len(rates) != 1:
        parser.error(f"the checkpoints differ in (ratio, sample rate): {sorted(rates)}")
    ratio, rate = rates.pop()
    clips = load_clips(args.files, ratio, rate)
    filters = [as_lowpass_spec(f) for f in args.filters]
    variants = tuple(args.variants)
    results = analyse(resolvers, clips, filters, list(args.filters), args.band_hz, variants)
    results["variants"] = list(variants)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    command = "python -m audio_superres.report.explain_mismatch " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    results["command"], results["seed"] = command, args.seed
    atomic_write_text(out / "results.json", json.dumps(results, indent=1))
    return render(results, out)


def render(results: dict[str, Any], out: Path) -> dict[str, Any]:
    """The plots and report.md of `results` into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    plot_lowres_spectrum(results, out / "lowres_spectrum.png")
    plot_ablations(results, out / "ablations.png", tuple(results["variants"]))
    for name in results["models"]:
        plot_bands(results, name, out / f"bands_{name}.png")
    print(write_report(results, out, results["command"], results["seed"]))
    return results


def replot(path: Path, out: Path) -> dict[str, Any]:
    """Report and plots again from a results.json (table (a) recomputed from its spectra)."""
    results = json.loads(Path(path).read_text())
    Path(out).mkdir(parents=True, exist_ok=True)
    rate, ratio = results["sample_rate"], results["ratio"]
    spec = results["lowres_spectrum"]
    fraction = np.asarray(spec["freqs_hz"]) / (rate / ratio / 2)
    spec["top_band_db_vs_training"] = top_band_levels(fraction, spec["power"], spec["training"])
    if Path(out).resolve() != Path(path).resolve().parent:
        atomic_write_text(Path(out) / "results.json", json.dumps(results, indent=1))
    else:
        atomic_write_text(Path(path), json.dumps(results, indent=1))
    return render(results, Path(out))


if __name__ == "__main__":
    main()
