"""What `python upsample.py` does: super-resolve real recordings with a trained checkpoint.

`input_kind=lr` (default): each file IS the low-res signal. At the model's LR rate
(`sample_rate / ratio`) it is streamed straight through `inference.super_resolve_stream`; at
another rate it is resampled first, with a warning. `input_kind=hr`: each file is a high-res
recording degraded with the checkpoint's training filter first (`make_lowres`), to demonstrate
the model on material with a known reference. The degrading filter is `lowpass=` when given, else
the checkpoint's training filter; a checkpoint trained with `lowpass=random` (a distribution, not
one filter) falls back to `DEFAULT_DEGRADE` (chebyshev: `scipy.signal.decimate`, the 2017
`--low-pass`). The log and the samples page say which filter was used. Every path streams
(`dsp.blockwise`: block-wise `resample_audio` / `make_lowres`), so memory does not depend on a
file's length.

Every channel is super-resolved separately; outputs are WAV (float32) or FLAC (24-bit) at the
model's rate, written atomically, mirroring the input tree. `report=true` adds the samples page.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from omegaconf import DictConfig

from audio_superres.checkpoint import load_checkpoint
from audio_superres.data.audio_io import AudioFileError, to_mono
from audio_superres.dsp.bandwidth import InputCheck, check_input, measure_reader
from audio_superres.dsp.blockwise import (
    FileReader,
    LowresReader,
    Reader,
    RefilteredReader,
    ResampledReader,
)
from audio_superres.dsp.cubic import CubicUpsample
from audio_superres.dsp.lowpass import LowpassSpec, as_lowpass_spec
from audio_superres.errors import ConfigError, DataError, PathNotFoundError
from audio_superres.inference import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CHUNK,
    DEFAULT_OVERLAP,
    resolve_device,
    super_resolve_stream,
)
from audio_superres.module import lowpass_to_dict, module_from_checkpoint
from audio_superres.tasks.evaluate import settle_from_checkpoint
from audio_superres.tasks.train import inference_settings
from audio_superres.utils import atomic_path

log = logging.getLogger(__name__)

_OUT_FORMATS = {"wav": ("WAV", "FLOAT"), "flac": ("FLAC", "PCM_24")}
# input_kind=hr with a checkpoint trained on random filters and no lowpass= given
DEFAULT_DEGRADE = "chebyshev"
# input_conditioning=: auto (re-filter only when the top band says so), off, always (issue 20)
CONDITIONING_MODES = ("auto", "off", "always")


def describe_lowpass(spec: LowpassSpec) -> str:
    """One phrase naming a concrete filter, for the log and the samples page."""
    if spec.kind == "none":
        return "no filter (every r-th sample kept, aliased)"
    details = [f"order {spec.order}", f"cutoff {spec.cutoff:g}"]
    if spec.kind in ("chebyshev", "elliptic"):
        details.append(f"ripple {spec.ripple_db:g} dB")
    if spec.kind == "elliptic":
        details.append(f"attenuation {spec.attenuation_db:g} dB")
    phase = "zero phase" if spec.zero_phase else "one pass"
    return f"{spec.kind} ({', '.join(details)}, {phase})"


def degrade_filter(trained: Any, asked: Any, ckpt_path: str) -> tuple[LowpassSpec, str]:
    """The filter that makes LR from HR files (`input_kind=hr`) and where it comes from."""
    if asked is not None:
        try:
            spec = as_lowpass_spec(asked)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid lowpass= for input_kind=hr: {exc}") from None
        if spec.kind == "random":
            raise ConfigError(
                "lowpass=random is a distribution of filters; input_kind=hr needs one filter: "
                "pass lowpass=chebyshev|butterworth|bessel|elliptic|none"
            )
        return spec, "lowpass= given"
    spec = as_lowpass_spec(trained)
    if spec.kind == "random":
        return as_lowpass_spec(DEFAULT_DEGRADE), (
            f"the default for a checkpoint trained with lowpass=random ({ckpt_path}); "
            "choose another with lowpass="
        )
    return spec, "the checkpoint's training filter"


def audio_extensions() -> set[str]:
    """File suffixes soundfile (libsndfile) can decode, lower case with the dot."""
    exts = {f".{k.lower()}" for k in sf.available_formats()}
    return exts | {".aif", ".aiff", ".oga", ".opus"}


def find_inputs(src: Path, dst: Path, ext: str) -> list[tuple[Path, Path]]:
    """(input, output) pairs: one file, or every audio file under a folder, tree mirrored."""
    if src.is_file():
        return [(src, dst / f"{src.stem}.{ext}")]
    if not src.is_dir():
        raise PathNotFoundError(f"{src}: input not found (give an audio file or a folder)")
    exts = audio_extensions()
    files = sorted(
        p
        for p in src.rglob("*")
        if p.is_file() and p.suffix.lower() in exts and not p.name.startswith(".")
    )
    if dst.resolve().is_relative_to(src.resolve()):
        files = [p for p in files if not p.resolve().is_relative_to(dst.resolve())]
    if not files:
        raise PathNotFoundError(f"{src}: no audio files found under this folder")
    pairs = [(p, dst / p.relative_to(src).with_suffix(f".{ext}")) for p in files]
    seen: dict[Path, Path] = {}
    for p, out in pairs:
        if out in seen:
            raise DataError(f"{p} and {seen[out]} would both be written to {out}: rename one")
        seen[out] = p
    return pairs


class _ClippingWriter:
    """Integer formats (FLAC) would wrap out-of-range samples: clip them first."""

    def __init__(self, f: sf.SoundFile, clip: bool) -> None:
        self.f, self.clip = f, clip

    def write(self, data: np.ndarray) -> None:
        self.f.write(np.clip(data, -1.0, 1.0) if self.clip else data)


@dataclass
class Upsampler:
    """A checkpoint's model with its task settings, ready to super-resolve files."""

    model: torch.nn.Module
    ratio: int
    sample_rate: int
    lowpass: dict[str, Any]  # the filter that degrades input_kind=hr files (a concrete one)
    checkpoint: str
    chunk: int = DEFAULT_CHUNK
    overlap: int = DEFAULT_OVERLAP
    batch_size: int = DEFAULT_BATCH_SIZE
    device: str = "auto"
    lowpass_source: str = "the checkpoint's training filter"
    training_lowpass: dict[str, Any] | None = None  # the checkpoint's (None: same as `lowpass`)
    input_conditioning: str = "auto"

    @property
    def lr_rate(self) -> int:
        return round(self.sample_rate / self.ratio)

    @classmethod
    def from_config(cls, cfg: DictConfig) -> Upsampler:
        ckpt_path = cfg.get("ckpt_path")
        if not ckpt_path:
            raise ConfigError("pass ckpt_path=CKPT: the checkpoint to super-resolve with")
        ckpt = load_checkpoint(ckpt_path)
        hp = ckpt["hyper_parameters"]
        ratio = settle_from_checkpoint(cfg, "ratio", hp.get("ratio"), ckpt_path)
        sample_rate = settle_from_checkpoint(cfg, "sample_rate", hp.get("sample_rate"), ckpt_path)
        if sample_rate % ratio:
            raise ConfigError(
                f"{ckpt_path}: sample_rate {sample_rate} is not a multiple of {ratio}"
            )
        module = module_from_checkpoint(ckpt, ratio=ratio, sample_rate=sample_rate)
        settings = inference_settings(cfg)
        spec, source = degrade_filter(hp["lowpass"], _plain(cfg.get("lowpass")), str(ckpt_path))
        conditioning = str(cfg.get("input_conditioning", "auto")).lower()
        if conditioning not in CONDITIONING_MODES:
            raise ConfigError(
                f"input_conditioning must be one of {', '.join(CONDITIONING_MODES)}; "
                f"got {cfg.get('input_conditioning')!r}"
            )
        return cls(
            model=module.model.eval(),
            ratio=ratio,
            sample_rate=sample_rate,
            lowpass=lowpass_to_dict(spec),
            lowpass_source=source,
            training_lowpass=lowpass_to_dict(as_lowpass_spec(hp["lowpass"])),
            input_conditioning=conditioning,
            checkpoint=str(ckpt_path),
            chunk=settings.chunk,
            overlap=settings.overlap,
            batch_size=settings.batch_size,
            device=str(resolve_device(cfg.get("device", "auto"))),
        )

    @property
    def degrade_description(self) -> str:
        """Which filter makes LR from HR files, and why that one."""
        return f"{describe_lowpass(as_lowpass_spec(self.lowpass))}, {self.lowpass_source}"

    def _hr_input(self, f: FileReader, warn: bool = True) -> tuple[Reader, str]:
        """The HR signal at the model's rate (streamed resampling when the file's differs)."""
        if f.samplerate == self.sample_rate:
            return f, ""
        (log.warning if warn else log.debug)(
            "%s: sample rate %d Hz is not the model's rate %d Hz; resampling it first",
            f.path,
            f.samplerate,
            self.sample_rate,
        )
        resampled = ResampledReader(f, f.samplerate, self.sample_rate)
        return resampled, f" (resampled {f.samplerate} -> {self.sample_rate} Hz first)"

    def _lowres_input(
        self, src: Path, kind: str, warn: bool = True
    ) -> tuple[Reader, str, FileReader]:
        """A streaming reader of the LR signal, how it was obtained, and the open file.

        Every path reads the file block by block: at the LR rate directly, otherwise through
        block-wise `resample_audio` (`input_kind=lr`) or block-wise `make_lowres` after optional
        resampling (`input_kind=hr`), so memory never depends on the file's length.
        """
        if kind not in ("lr", "hr"):
            raise ConfigError(f"input_kind must be 'lr' or 'hr', got {kind!r}")
        f = FileReader(src)
        if kind == "lr":
            if f.samplerate == self.lr_rate:
                return f, "low-res input", f
            (log.warning if warn else log.debug)(
                "%s: sample rate %d Hz is not the model's low-res rate %d Hz (%d / %d); "
                "resampling it first",
                src,
                f.samplerate,
                self.lr_rate,
                self.sample_rate,
                self.ratio,
            )
            how = f"low-res input resampled {f.samplerate} -> {self.lr_rate} Hz"
            return ResampledReader(f, f.samplerate, self.lr_rate), how, f
        hr, note = self._hr_input(f, warn)
        how = f"high-res input degraded with {describe_lowpass(as_lowpass_spec(self.lowpass))}"
        how += note
        return LowresReader(hr, self.ratio, self.lowpass), how, f

    def upsample_file(
        self,
        src: Path,
        dst: Path,
        kind: str = "lr",
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Super-resolve one file into `dst` (atomically); returns what the page needs."""
        reader, how, f = self._lowres_input(src, kind)
        try:
            reader, check = self.condition_input(src, kind, reader)
        except AudioFileError:
            f.close()
            raise
        except ValueError as e:  # e.g. too short for the filter: say which file
            f.close()
            raise AudioFileError(f"{src}: {e}") from e
        except BaseException:
            f.close()
            raise
        fmt, subtype = _OUT_FORMATS[dst.suffix.lower().lstrip(".")]
        try:
            with atomic_path(dst) as tmp:
                with sf.SoundFile(
                    str(tmp),
                    "w",
                    samplerate=self.sample_rate,
                    channels=reader.channels,
                    format=fmt,
                    subtype=subtype,
                ) as out:
                    super_resolve_stream(
                        self.model,
                        reader,
                        _ClippingWriter(out, clip=subtype.startswith("PCM")),
                        self.ratio,
                        chunk=self.chunk,
                        overlap=self.overlap,
                        batch_size=self.batch_size,
                        device=self.device,
                        progress=progress,
                    )
        except AudioFileError:
            raise
        except ValueError as e:  # e.g. too short for the filter: say which file
            raise AudioFileError(f"{src}: {e}") from e
        finally:
            f.close()
        return {
            "input": src,
            "output": dst,
            "how": how,
            "channels": reader.channels,
            "seconds": reader.frames / self.lr_rate,
            "has_hr": kind == "hr",
            "check": check,
        }

    def condition_input(
        self, src: Path, kind: str, reader: Reader
    ) -> tuple[Reader, InputCheck | None]:
        """Issue 20: measure a file's low-res input, log it, and bring it to the training
        condition only when its top band says so (`dsp.bandwidth.check_input`).

        One cheap pass over the whole file first (its own reader: decoding, and the resampling
        or degradation of its input path, no model), then `reader` is streamed as it is, or
        through `RefilteredReader` (the training filter's shape at the low-res rate).
        `input_conditioning=off` skips the pass; `always` re-filters every file. An
        `input_kind=hr` file degraded with the training filter itself is matched by
        construction and never re-filtered in `auto`.
        """
        if self.input_conditioning == "off":
            return reader, None
        trained = as_lowpass_spec(self.training_lowpass or self.lowpass)
        measured, _, f = self._lowres_input(src, kind, warn=False)
        with f:
            spectrum = measure_reader(measured, self.lr_rate)
        always = self.input_conditioning == "always"
        check = check_input(spectrum, trained, self.ratio, always=always)
        if not always and kind == "hr" and as_lowpass_spec(self.lowpass) == trained:
            check = replace(check, refilter=False, reason="degraded with the training filter")
        log.info("%s: %s", src, check.summary())
        if check.narrow:
            log.warning(
                "%s: effective bandwidth %.0f Hz (%.2f of the low-res Nyquist) is much less than "
                "the training input's (%.2f): the model expects content up to about %.0f Hz",
                src,
                check.bandwidth_hz,
                check.bandwidth,
                check.expected_bandwidth,
                check.expected_bandwidth * check.nyquist_hz,
            )
        if check.refilter:
            reader = RefilteredReader(reader, trained)
        return reader, check

    def page_example(self, item: dict[str, Any], seconds: float, kind: str) -> Any:
        """The first `seconds` of a processed file as a page example (mono mix)."""
        from audio_superres.report.page import PageExample

        n_lr = max(1, int(seconds * self.lr_rate))
        reader, _, f = self._lowres_input(Path(item["input"]), kind, warn=False)
        with f:
            lr = to_mono(np.ascontiguousarray(reader.read(n_lr, "float32", True).T))
        sr_out, _ = sf.read(str(item["output"]), frames=n_lr * self.ratio, dtype="float32")
        sr_out = to_mono(np.atleast_2d(sr_out.T) if sr_out.ndim > 1 else sr_out)
        cubic = CubicUpsample(self.ratio)(torch.from_numpy(lr)[None])[0].numpy()
        signals = {"LR": lr, "cubic": cubic, "SR": sr_out}
        rates = {"LR": self.lr_rate, "cubic": self.sample_rate, "SR": self.sample_rate}
        if item["has_hr"]:  # input_kind=hr: the reference is known (re-read, not kept)
            with FileReader(item["input"]) as f:
                hr, _ = self._hr_input(f, warn=False)
                n_hr = len(lr) * self.ratio
                signals["HR"] = to_mono(np.ascontiguousarray(hr.read(n_hr, "float32", True).T))
            rates["HR"] = self.sample_rate
        note = f"{item['how']}; {item['channels']} channel(s)"
        if item["channels"] > 1:
            note += " (mixed to mono on this page)"
        if item.get("check") is not None:
            note += f"; {item['check'].summary()} (LR shown as given)"
        return PageExample(name=str(item["rel"]), signals=signals, rates=rates, note=note)


def per_file_row(item: dict[str, Any], dst: Path) -> dict[str, Any]:
    """One upsampled file for the page's table and report/per_file.csv, with the input check
    (issue 20: bandwidth, top-band excess, re-filtered or not; empty when it was off)."""
    row = {
        "input": str(item["rel"]),
        "output": str(Path(item["output"]).relative_to(dst)),
        "channels": item["channels"],
        "seconds": round(float(item["seconds"]), 2),
        "input handling": item["how"],
    }
    check = item.get("check")
    empty = dict.fromkeys(
        ("bandwidth_hz", "bandwidth_fraction", "top_band_excess_db", "refiltered", "reason"), ""
    )
    return {**row, **(check.as_row() if check is not None else empty)}


def _plain(node: Any) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def upsample(cfg: DictConfig) -> Path:
    """Super-resolve `cfg.input` (file or folder) into `cfg.output`; returns the output dir."""
    from tqdm import tqdm

    up = Upsampler.from_config(cfg)
    src, dst = Path(str(cfg.input)), Path(str(cfg.output))
    ext = str(cfg.get("format", "wav")).lower()
    if ext not in _OUT_FORMATS:
        raise ConfigError(f"format must be one of {', '.join(_OUT_FORMATS)}; got {ext!r}")
    kind = str(cfg.get("input_kind", "lr"))
    if kind not in ("lr", "hr"):
        raise ConfigError(f"input_kind must be 'lr' or 'hr', got {kind!r}")
    pairs = find_inputs(src, dst, ext)
    if kind == "hr":
        log.info("input_kind=hr: degrading each file with %s", up.degrade_description)
    elif cfg.get("lowpass") is not None:
        log.warning("lowpass= is used only with input_kind=hr; the files are taken as low-res")
    log.info(
        "%s: %d file(s), %dx to %d Hz on %s",
        up.checkpoint,
        len(pairs),
        up.ratio,
        up.sample_rate,
        up.device,
    )
    done = []
    bar = tqdm(pairs, unit="file", disable=not cfg.get("progress", True) or len(pairs) == 1)
    for path, out in bar:
        bar.set_postfix_str(path.name)
        t0 = time.perf_counter()
        item = up.upsample_file(path, out, kind)
        item["wall_s"] = time.perf_counter() - t0
        log.info("%s: %.1f s of audio in %.2f s", path, item["seconds"], item["wall_s"])
        item["rel"] = path.relative_to(src) if src.is_dir() else Path(path.name)
        done.append(item)
    if cfg.get("report", False):
        from audio_superres.report.page import Table, write_samples_page
        from audio_superres.report.results import write_per_file_csv

        n = int(cfg.get("report_max_files", 20))
        seconds = float(cfg.get("report_seconds", 20.0))
        examples = [up.page_example(item, seconds, kind) for item in done[:n]]
        rows = [per_file_row(i, dst) for i in done]
        table = Table(
            f"{len(done)} file(s) super-resolved", list(rows[0]), [list(r.values()) for r in rows]
        )
        write_per_file_csv(dst / "report" / "per_file.csv", rows)
        page = write_samples_page(
            dst / "report",
            examples,
            title=f"Super-resolved recordings ({up.ratio}x, {up.lr_rate} -> {up.sample_rate} Hz)",
            intro=(
                f"The first {seconds:g} s of up to {n} files: the low-res input, the cubic "
                "spline baseline and the model's output."
            ),
            tables=[table],
            meta={
                "checkpoint": up.checkpoint,
                "input": str(src),
                "input_kind": kind,
                **({"degraded with": up.degrade_description} if kind == "hr" else {}),
            },
        )
        log.info("samples page: %s", page)
    print(dst)
    return dst
