"""Figures: the four-panel spectrogram (HR, LR, cubic, SR) of the 2017 samples page."""

from __future__ import annotations

import io
from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")  # headless: never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.signal import stft  # noqa: E402


def _log_spectrogram(
    x: np.ndarray, sr: int, n_fft: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if len(x) < 16:  # a few samples (a 1-frame file): zero-padded to the shortest window
        x = np.pad(x, (0, 16 - len(x)))
    n_fft = max(16, min(n_fft, len(x)))
    f, t, z = stft(x, fs=sr, nperseg=n_fft, noverlap=n_fft * 3 // 4)
    return f, t, 20 * np.log10(np.abs(z) + 1e-6)


def spectrogram_figure(
    signals: Mapping[str, np.ndarray],
    sample_rates: Mapping[str, int],
    title: str = "",
    n_fft: int = 512,
) -> plt.Figure:
    """One row per signal, shared time axis and frequency axis up to the highest Nyquist."""
    fmax = max(sample_rates.values()) / 2
    fig, axes = plt.subplots(1, len(signals), figsize=(3.2 * len(signals), 3), sharey=True)
    axes = np.atleast_1d(axes)
    peak = None
    panels = []
    for name, x in signals.items():
        sr = sample_rates[name]
        scale = max(sr, max(sample_rates.values())) // sr  # keep the time resolution comparable
        f, t, s = _log_spectrogram(np.asarray(x, dtype=np.float64), sr, max(16, n_fft // scale))
        panels.append((name, f, t, s))
        peak = s.max() if peak is None else max(peak, s.max())
    for ax, (name, f, t, s) in zip(axes, panels, strict=True):
        ax.pcolormesh(t, f / 1000, s, shading="auto", vmin=peak - 100, vmax=peak, cmap="magma")
        ax.set_title(name)
        ax.set_xlabel("time (s)")
        ax.set_ylim(0, fmax / 1000)
    axes[0].set_ylabel("frequency (kHz)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def figure_to_png(fig: plt.Figure, dpi: int = 100) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()
