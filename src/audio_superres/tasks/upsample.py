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

import csv
import io
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from omegaconf import DictConfig

from audio_superres.data.audio_io import AudioFileError, to_mono
from audio_superres.dsp.bandwidth import InputCheck, PowerSpectrum, measure_reader
from audio_superres.dsp.blockwise import (
    FileReader,
    LowresReader,
    Reader,
    ResampledReader,
)
from audio_superres.dsp.cubic import CubicUpsample
from audio_superres.dsp.lowpass import (
    LowpassSpec,
    as_lowpass_spec,
    describe_lowpass,
    lowpass_to_dict,
)
from audio_superres.errors import (
    ConfigError,
    DataError,
    PathNotFoundError,
    UserFacingError,
    one_line,
)
from audio_superres.resolver import SuperResolver, load_model
from audio_superres.settings import inference_settings, settle_from_checkpoint
from audio_superres.utils import (
    atomic_path,
    atomic_write_text,
    ensure_writable_dir,
    remove_atomic_temporaries,
)

log = logging.getLogger(__name__)

_OUT_FORMATS = {"wav": ("WAV", "FLOAT"), "flac": ("FLAC", "PCM_24")}
# what happens to output beyond full scale (each such file is named in a warning either way):
# warn = float WAV keeps it, FLAC clips it; clip = clipped in every format; normalize = the file
# is scaled down so that its peak is full scale
PEAK_POLICIES = ("warn", "clip", "normalize")
FAILED_REPORT = "failed.csv"  # the output folder's list of inputs that could not be processed
# input_kind=hr with a checkpoint trained on random filters and no lowpass= given
DEFAULT_DEGRADE = "chebyshev"


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


def _resolved(path: Path) -> Path:
    """`path` with links followed and `..` folded; as written (absolute) for a link loop."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # RuntimeError: Python < 3.13 on a symlink loop
        return Path(os.path.abspath(path))


def _same_place(a: Path, b: Path) -> bool:
    """Whether two paths name one file or folder: as written (`..` folded), once links are
    resolved, or (both existing) the same inode (a hard link)."""
    if os.path.abspath(a) == os.path.abspath(b) or _resolved(a) == _resolved(b):
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _inode(path: Path) -> tuple[int, int] | None:
    """(device, inode) of an existing file (links followed), None otherwise."""
    try:
        st = path.stat()
    except (OSError, RuntimeError):
        return None
    return st.st_dev, st.st_ino


def check_no_input_overwritten(pairs: list[tuple[Path, Path]]) -> None:
    """Refuse (DataError, one line, before anything is written) any output that would be
    written over an input: same folder and name, a link to it, `..`, a hard link."""
    inputs: dict[Any, Path] = {}
    for src, _ in pairs:
        inputs[os.path.abspath(src)] = src
        inputs[str(_resolved(src))] = src
        if (inode := _inode(src)) is not None:
            inputs[inode] = src
    for _, out in pairs:
        hit = inputs.get(os.path.abspath(out)) or inputs.get(str(_resolved(out)))
        if hit is None and (inode := _inode(out)) is not None:
            hit = inputs.get(inode)
        if hit is not None:
            raise DataError(
                f"{hit}: its output {out} would be written over this input; upsample.py never "
                "overwrites an input: choose another output= folder (or format=)"
            )


def _candidates(src: Path, exts: set[str]) -> list[Path]:
    """Every entry under `src` named like an audio file (hidden ones aside), folders aside:
    unreadable files, broken links and pipes included, so that each is named as a bad file
    instead of vanishing from the run."""
    return sorted(
        p
        for p in src.rglob("*")
        if p.suffix.lower() in exts and not p.name.startswith(".") and not p.is_dir()
    )


def find_inputs(src: Path, dst: Path, ext: str) -> list[tuple[Path, Path]]:
    """(input, output) pairs: one file, or every audio file under a folder, tree mirrored.

    Refuses (one line, before anything is written): an output folder that is the input folder,
    two inputs that would share an output (`a.wav` and `a.flac`), and any output that would be
    written over an input (`check_no_input_overwritten`). Files under the output folder, when
    it lies inside the input folder, are not inputs (the results of an earlier run).
    """
    if src.is_file() or (src.is_symlink() and not src.exists()):
        pairs = [(src, dst / f"{src.stem}.{ext}")]
        check_no_input_overwritten(pairs)
        return pairs
    if not src.is_dir():
        raise PathNotFoundError(f"{src}: input not found (give an audio file or a folder)")
    if _same_place(src, dst):
        raise DataError(
            f"{dst}: the output folder is the input folder, so the outputs would be written over "
            "the inputs; choose another output= folder (it may lie inside the input folder)"
        )
    files = _candidates(src, audio_extensions())
    if not files:
        raise PathNotFoundError(f"{src}: no audio files found under this folder")
    if _resolved(dst).is_relative_to(_resolved(src)):
        inside = [p for p in files if _resolved(p).is_relative_to(_resolved(dst))]
        files = [p for p in files if p not in inside]
        if not files:
            raise PathNotFoundError(
                f"{src}: no audio files found outside the output folder {dst} (its "
                f"{len(inside)} file(s) are results, not inputs)"
            )
    pairs = [(p, dst / p.relative_to(src).with_suffix(f".{ext}")) for p in files]
    seen: dict[Path, Path] = {}
    for p, out in pairs:
        if out in seen:
            raise DataError(f"{p} and {seen[out]} would both be written to {out}: rename one")
        seen[out] = p
    check_no_input_overwritten(pairs)
    return pairs


@dataclass
class PeakMeter:
    """Writes HR blocks to an open output file and measures what was written.

    `peak` is the largest magnitude the model produced; samples beyond full scale are clipped
    to [-1, 1] when `clip` (integer formats, which would wrap them, and `peak=clip`), counted
    in `clipped`. `gain` scales every sample first (`peak=normalize`'s second pass). Non-finite
    output (an input so loud that the model overflows) is a ValueError: nothing is written.
    """

    f: Any
    clip: bool
    gain: float = 1.0
    peak: float = 0.0
    clipped: int = 0

    def write(self, data: np.ndarray) -> None:
        if self.gain != 1.0:
            data = data * np.float32(self.gain)
        if data.size:
            if not np.isfinite(data).all():
                raise ValueError(
                    "the model's output holds non-finite samples (NaN or inf): is the input's "
                    "level sane?"
                )
            self.peak = max(self.peak, float(np.max(np.abs(data))))
        if self.clip:
            over = np.abs(data) > 1.0
            self.clipped += int(over.sum())
            data = np.clip(data, -1.0, 1.0)
        self.f.write(data)


def peak_message(dst: Path, peak: float, policy: str, fmt_subtype: str, clipped: int) -> str:
    """The per-file line for an output whose peak exceeds full scale (what was done about it)."""
    over = f"{dst}: output peak {peak:.3g} is {20 * np.log10(peak):.1f} dB above full scale"
    if policy == "normalize":
        return f"{over}; scaled down by {20 * np.log10(peak):.1f} dB to full scale (peak=normalize)"
    if clipped:
        why = "peak=clip" if policy == "clip" else f"{fmt_subtype} cannot hold it"
        return (
            f"{over}; {clipped} sample(s) clipped to full scale ({why}); peak=normalize scales "
            "the file down instead"
        )
    return (
        f"{over}; kept in the float WAV (players and converters will clip it): peak=normalize "
        "scales it down, peak=clip clips it"
    )


@dataclass
class Upsampler:
    """A checkpoint's model (a `SuperResolver`) with upsample.py's settings, ready to
    super-resolve files: the input kinds, the degrading filter of `input_kind=hr`, peaks."""

    resolver: SuperResolver
    lowpass: dict[str, Any]  # the filter that degrades input_kind=hr files (a concrete one)
    checkpoint: str
    lowpass_source: str = "the checkpoint's training filter"

    # what the resolver holds, under the names the rest of this module (and its callers) use
    @property
    def model(self) -> torch.nn.Module:
        return self.resolver.model

    @property
    def ratio(self) -> int:
        return self.resolver.ratio

    @property
    def sample_rate(self) -> int:
        return self.resolver.sample_rate

    @property
    def lr_rate(self) -> int:
        return self.resolver.lr_rate

    @property
    def device(self) -> str:
        return str(self.resolver.device)

    @property
    def precision(self) -> str:
        return self.resolver.precision

    @property
    def training_lowpass(self) -> dict[str, Any]:
        return self.resolver.training_lowpass

    @property
    def input_conditioning(self) -> str:
        return self.resolver.input_conditioning

    @classmethod
    def from_config(cls, cfg: DictConfig) -> Upsampler:
        ckpt_path = cfg.get("ckpt_path")
        if not ckpt_path:
            raise ConfigError(
                "pass ckpt_path=CKPT: the checkpoint (or bundled model name) to super-resolve with"
            )
        ckpt, _ = load_model(ckpt_path)  # a checkpoint, or a bundled/exported model
        hp = ckpt["hyper_parameters"]
        ratio = settle_from_checkpoint(cfg, "ratio", hp.get("ratio"), ckpt_path)
        sample_rate = settle_from_checkpoint(cfg, "sample_rate", hp.get("sample_rate"), ckpt_path)
        if sample_rate % ratio:
            raise ConfigError(
                f"{ckpt_path}: sample_rate {sample_rate} is not a multiple of {ratio}"
            )
        settings = inference_settings(cfg)
        spec, source = degrade_filter(hp["lowpass"], _plain(cfg.get("lowpass")), str(ckpt_path))
        resolver = SuperResolver.from_loaded(
            ckpt,
            str(ckpt_path),
            ratio=ratio,
            sample_rate=sample_rate,
            device=cfg.get("device", "auto"),
            settings=settings,
            input_conditioning=str(cfg.get("input_conditioning", "auto")),
        )
        return cls(
            resolver=resolver,
            lowpass=lowpass_to_dict(spec),
            lowpass_source=source,
            checkpoint=str(ckpt_path),
        )

    def check_chunking(self) -> None:
        self.resolver.check_chunking()

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
            how = f"low-res input resampled {f.samplerate} -> {self.lr_rate} Hz"
            return self.resolver.lowres(f, f.samplerate, src, warn, log), how, f
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
        peak: str = "warn",
    ) -> dict[str, Any]:
        """Super-resolve one file into `dst` (atomically); returns what the page needs.

        `peak` (`PEAK_POLICIES`) says what happens to output beyond full scale; an output that
        exceeds it is named in a warning either way (`peak_message`).
        """
        if peak not in PEAK_POLICIES:
            raise ConfigError(f"peak must be one of {', '.join(PEAK_POLICIES)}; got peak={peak}")
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
                if peak == "normalize":
                    meter = self._render_normalized(reader, tmp, fmt, subtype, progress)
                else:
                    clip = peak == "clip" or subtype.startswith("PCM")
                    meter = self._render(reader, tmp, fmt, subtype, clip, progress)
        except UserFacingError:  # the file's own error, or a setting's (ConfigError)
            raise
        except ValueError as e:  # e.g. too short for the filter: say which file
            raise AudioFileError(f"{src}: {e}") from e
        finally:
            f.close()
        if meter.peak > 1.0:
            log.warning("%s", peak_message(dst, meter.peak, peak, subtype, meter.clipped))
        return {
            "input": src,
            "output": dst,
            "how": how,
            "channels": reader.channels,
            "seconds": reader.frames / self.lr_rate,
            "has_hr": kind == "hr",
            "peak": meter.peak,
            "check": check,
        }

    def _render(
        self,
        reader: Reader,
        path: Path,
        fmt: str,
        subtype: str,
        clip: bool,
        progress: Callable[[int], None] | None = None,
    ) -> PeakMeter:
        """Run the model over `reader` into a new file at `path`; the meter says what it wrote."""
        with sf.SoundFile(
            str(path),
            "w",
            samplerate=self.sample_rate,
            channels=reader.channels,
            format=fmt,
            subtype=subtype,
        ) as out:
            meter = PeakMeter(out, clip=clip)
            self.resolver.stream(reader, meter, progress)
        return meter

    def _render_normalized(
        self,
        reader: Reader,
        path: Path,
        fmt: str,
        subtype: str,
        progress: Callable[[int], None] | None = None,
    ) -> PeakMeter:
        """`peak=normalize`: render into a float scratch file (a hidden temporary beside `path`,
        removed in every case), then copy it scaled to full scale when its peak exceeds it.
        The returned meter holds the model's own peak."""
        fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp.wav", dir=path.parent)
        os.close(fd)
        scratch = Path(name)
        try:
            first = self._render(reader, scratch, "WAV", "FLOAT", False, progress)
            gain = 1.0 / first.peak if first.peak > 1.0 else 1.0
            with sf.SoundFile(str(scratch)) as src, sf.SoundFile(
                str(path), "w", samplerate=self.sample_rate, channels=src.channels,
                format=fmt, subtype=subtype,
            ) as out:  # fmt: skip
                second = PeakMeter(out, clip=True, gain=gain)  # clips float rounding only
                for block in src.blocks(blocksize=1 << 16, dtype="float32", always_2d=True):
                    second.write(block)
        finally:
            scratch.unlink(missing_ok=True)
        first.clipped = second.clipped
        return first

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

        def spectrum() -> PowerSpectrum:
            measured, _, f = self._lowres_input(src, kind, warn=False)
            with f:
                return measure_reader(measured, self.lr_rate)

        matched = kind == "hr" and as_lowpass_spec(self.lowpass) == as_lowpass_spec(
            self.training_lowpass
        )
        return self.resolver.condition(reader, spectrum, src, matched=matched, logger=log)

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
        "seconds": round(float(item["seconds"]), 3),
        "peak": round(float(item["peak"]), 3),
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


@dataclass(frozen=True)
class UpsampleOptions:
    """upsample.py's own settings, checked before the checkpoint is read or a file written."""

    ext: str = "wav"  # format=
    kind: str = "lr"  # input_kind=
    on_bad_file: str = "skip"  # skip | error (the data configs' vocabulary)
    peak: str = "warn"  # PEAK_POLICIES
    report_max_files: int = 20  # files shown on the samples page (report=true)
    report_seconds: float = 20.0  # excerpt length per file on the page

    @classmethod
    def from_config(cls, cfg: DictConfig) -> UpsampleOptions:
        from audio_superres.data.cache import BAD_FILE_POLICIES

        ext = str(cfg.get("format", "wav")).lower()
        if ext not in _OUT_FORMATS:
            raise ConfigError(f"format must be one of {', '.join(_OUT_FORMATS)}; got {ext!r}")
        kind = str(cfg.get("input_kind", "lr"))
        if kind not in ("lr", "hr"):
            raise ConfigError(f"input_kind must be 'lr' or 'hr', got {kind!r}")
        policy = str(cfg.get("on_bad_file", "skip"))
        if policy not in BAD_FILE_POLICIES:
            raise ConfigError(
                f"on_bad_file must be one of {', '.join(BAD_FILE_POLICIES)} (skip: process every "
                f"good file and list the bad ones; error: stop at the first); got {policy!r}"
            )
        peak = str(cfg.get("peak", "warn"))
        if peak not in PEAK_POLICIES:
            raise ConfigError(f"peak must be one of {', '.join(PEAK_POLICIES)}; got {peak!r}")
        page = {}
        for key, kind_of, default in (("report_max_files", int, 20), ("report_seconds", float, 20)):
            value = cfg.get(key, default)
            try:
                page[key] = kind_of(value)
            except (TypeError, ValueError):
                page[key] = -1
            if isinstance(value, bool) or page[key] <= 0:
                raise ConfigError(f"{key} must be a positive number, got {key}={value}")
        return cls(ext=ext, kind=kind, on_bad_file=policy, peak=peak, **page)


def prepare_output(dst: Path, pairs: list[tuple[Path, Path]]) -> None:
    """Check that the output folder can be written (one line if not: a file in the way,
    read-only, permissions), and remove the temporaries a killed run left in the folders this
    run writes into (only names of `atomic_path` temporaries; `utils.remove_atomic_temporaries`)."""
    ensure_writable_dir(dst)
    folders = {dst, dst / "report", *(out.parent for _, out in pairs)}
    for folder in sorted(folders):
        for tmp in remove_atomic_temporaries(folder):
            log.info("removed %s, the temporary of a write that was killed", tmp)


def _reason(path: Path, exc: BaseException) -> str:
    """An error's message without the `<path>: ` it starts with (the report has a path column)."""
    message = one_line(exc)
    prefix = f"{path}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def write_failed_report(dst: Path, failed: list[dict[str, str]]) -> Path | None:
    """`failed.csv` (input, output, reason) in the output folder when any file failed; a stale
    one from an earlier run into the same folder is removed when none did."""
    path = dst / FAILED_REPORT
    if not failed:
        path.unlink(missing_ok=True)
        return None
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["input", "output", "reason"])
    writer.writeheader()
    writer.writerows(failed)
    atomic_write_text(path, buffer.getvalue())
    return path


def process_files(
    up: Upsampler,
    pairs: list[tuple[Path, Path]],
    src: Path,
    dst: Path,
    opts: UpsampleOptions,
    bar: Any,
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Super-resolve every pair; returns (done, failed). A file that cannot be used (an
    AudioFileError: undecodable, truncated, NaN, empty, too short...) is named in one warning
    line and listed, and the next file goes on (`on_bad_file=skip`), or it stops the run
    (`error`). Ctrl-C stops with one line saying how many files were finished."""
    done: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []
    in_flight: Path | None = None  # the input whose output is being written
    try:
        for path, out in bar:
            bar.set_postfix_str(path.name)
            t0 = time.perf_counter()
            in_flight = path
            try:
                item = up.upsample_file(path, out, opts.kind, peak=opts.peak)
            except AudioFileError as exc:
                in_flight = None
                if opts.on_bad_file == "error":
                    raise
                log.warning("skipped: %s", one_line(exc))
                reason = _reason(path, exc)
                failed.append({"input": str(path), "output": str(out), "reason": reason})
                continue
            done.append(item)
            in_flight = None
            item["wall_s"] = time.perf_counter() - t0
            item["rel"] = path.relative_to(src) if src.is_dir() else Path(path.name)
            log.info("%s: %.1f s of audio in %.2f s", path, item["seconds"], item["wall_s"])
    except KeyboardInterrupt:
        stopped = f"{in_flight} was not written" if in_flight else "no file was in progress"
        raise KeyboardInterrupt(
            f"{len(done)} of {len(pairs)} file(s) were finished in {dst}; {stopped}, and no "
            "half-written file remains (outputs are written to a temporary name and renamed "
            "into place)"
        ) from None
    return done, failed


def write_report_page(
    up: Upsampler, done: list[dict[str, Any]], src: Path, dst: Path, opts: UpsampleOptions
) -> Path:
    """OUTPUT/report/index.html: the first `report_max_files` outputs (a file whose excerpt
    cannot be shown is left off the page with a warning saying why) and the table of all."""
    from audio_superres.report.page import Table, write_samples_page
    from audio_superres.report.results import write_per_file_csv

    n, seconds, kind = opts.report_max_files, opts.report_seconds, opts.kind
    examples = []
    for item in done[:n]:
        try:
            examples.append(up.page_example(item, seconds, kind))
        except UserFacingError as exc:  # e.g. the file changed since it was processed
            log.warning("left off the samples page: %s", one_line(exc))
    rows = [per_file_row(i, dst) for i in done]
    table = Table(
        f"{len(done)} file(s) super-resolved", list(rows[0]), [list(r.values()) for r in rows]
    )
    write_per_file_csv(dst / "report" / "per_file.csv", rows)
    return write_samples_page(
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


def upsample(cfg: DictConfig) -> Path:
    """Super-resolve `cfg.input` (file or folder) into `cfg.output`; returns the output dir.

    Every good file of a folder is processed; the bad ones are named (one line each), listed in
    OUTPUT/failed.csv, and make the run end with a one-line error (exit status 1) after the
    output folder is printed. `on_bad_file=error` stops at the first one instead (always, for
    a single input file: its own error is the message).
    """
    from tqdm import tqdm

    opts = UpsampleOptions.from_config(cfg)
    src, dst = Path(str(cfg.input)), Path(str(cfg.output))
    pairs = find_inputs(src, dst, opts.ext)  # refuses any output that would overwrite an input
    if not src.is_dir():  # one file: its own error is the whole story (no failed.csv)
        opts = replace(opts, on_bad_file="error")
    up = Upsampler.from_config(cfg)
    kind = opts.kind
    if kind == "hr":
        log.info("input_kind=hr: degrading each file with %s", up.degrade_description)
    elif cfg.get("lowpass") is not None:
        log.warning("lowpass= is used only with input_kind=hr; the files are taken as low-res")
    prepare_output(dst, pairs)
    log.info(
        "%s: %d file(s), %dx to %d Hz on %s",
        up.checkpoint,
        len(pairs),
        up.ratio,
        up.sample_rate,
        up.device,
    )
    bar = tqdm(pairs, unit="file", disable=not cfg.get("progress", True) or len(pairs) == 1)
    done, failed = process_files(up, pairs, src, dst, opts, bar)
    return finish_run(up, done, failed, len(pairs), src, dst, opts, bool(cfg.get("report", False)))


def finish_run(
    up: Upsampler,
    done: list[dict[str, Any]],
    failed: list[dict[str, Any]],
    total: int,
    src: Path,
    dst: Path,
    opts: UpsampleOptions,
    report: bool,
) -> Path:
    """The end of a run (upsample.py and `audio-superres upsample`): the samples page if asked
    for, failed.csv, the output folder printed, and a DataError when any file failed."""
    if report:
        if done:
            log.info("samples page: %s", write_report_page(up, done, src, dst, opts))
        else:
            log.warning("no samples page: no file was super-resolved")
    failed_csv = write_failed_report(dst, failed)
    print(dst)
    if failed_csv is not None:
        raise DataError(
            f"{failed_csv}: {len(failed)} of {total} file(s) could not be super-resolved "
            f"(listed there, {len(done)} done), e.g. {failed[0]['input']}: {failed[0]['reason']}"
        )
    return dst
