"""`SuperResolver`: a trained generator ready to super-resolve audio, without Lightning or Hydra.

The one inference object of the package, and the one way a checkpoint's generator is rebuilt:
`upsample.py`, `evaluate.py` (`SuperResolutionModule.from_resolver`), the `audio-superres` command
and the benchmarks build their model through it, and a Python user calls it directly::

    from audio_superres import SuperResolver

    sr = SuperResolver.from_checkpoint("last.ckpt")      # device="auto", precision="auto"
    hr, rate = sr.sr(audio, sample_rate)                  # (n,) or (channels, n), any rate

It holds the generator (built from the checkpoint's stored model config through the allow-list
of `checkpoint.py`, the generator's weights only: no LightningModule, no metrics), the ratio, the
high- and low-res rates, the training filter, the input conditioning of issue 20
(`input_conditioning`: auto | off | always, `dsp.bandwidth.check_input` and
`dsp.blockwise.RefilteredReader`), the chunking (`inference.InferenceSettings`), the device and
the precision. Every path is the one streamed path of `upsample.py`: the input is read block by
block, resampled to the low-res rate when it has another (`dsp.blockwise.ResampledReader`, the
project's one resampler `dsp.resample.resample_audio`, logged), conditioned, and run through
`inference.super_resolve_stream`; so `sr` on an array and `upsample.py` on the same samples in a
file give the same output bit for bit.

Importing this module imports torch, numpy, scipy, soundfile and omegaconf (the package's own
config resolvers), never lightning, torchmetrics or hydra (tests/test_resolver.py checks it).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from audio_superres import pretrained
from audio_superres.checkpoint import (
    CheckpointError,
    check_weights_fit,
    generator_state_dict,
    instantiate_trusted,
    load_checkpoint,
)
from audio_superres.dsp.bandwidth import (
    InputCheck,
    PowerSpectrum,
    conditioning_check,
    conditioning_mode,
    measure_reader,
)
from audio_superres.dsp.blockwise import FileReader, Reader, RefilteredReader, ResampledReader
from audio_superres.dsp.lowpass import (
    as_lowpass_spec,
    check_sample_rate,
    describe_lowpass,
    lowpass_to_dict,
)
from audio_superres.errors import ConfigError, DataError, UserFacingError
from audio_superres.inference import (
    InferenceSettings,
    hr_alignment,
    model_context,
    plan_chunks,
    resolve_device,
    super_resolve_stream,
)
from audio_superres.models.base import SuperResModel
from audio_superres.utils import atomic_path, positive_int

log = logging.getLogger(__name__)

HOW_TO_TRAIN = (
    "train one with `python train.py experiment=demo` (docs/training.md) and pass its "
    "checkpoint (--ckpt PATH, SuperResolver.from_checkpoint(PATH))"
)
_OUT_FORMATS = {".wav": ("WAV", "FLOAT"), ".flac": ("FLAC", "PCM_24")}


def bundled_models() -> dict[str, dict[str, Any]]:
    """The models shipped with the package, name -> model card (`pretrained.py`)."""
    return pretrained.bundled_models()


def unknown_model(name: str) -> UserFacingError:
    """The one-line error for a model name that is not bundled, naming the ones that are."""
    names = ", ".join(sorted(bundled_models())) or "none"
    return ConfigError(
        f"{name}: no bundled model of that name (available: {names}); or {HOW_TO_TRAIN}"
    )


def load_model(ref: str | os.PathLike) -> tuple[dict[str, Any], str]:
    """What a model reference names, loaded as `checkpoint.load_checkpoint` gives it, and the
    path errors name: a training checkpoint's path, a bundled model's name (`speech-r4`), or
    an exported model's `.json` card or `.safetensors` weights (`pretrained.py`)."""
    text = str(ref)
    path = Path(text)
    if path.suffix in (".json", ".safetensors"):
        loaded = pretrained.load_bundled(path)
        return loaded, loaded["card_path"]
    if not path.exists() and os.sep not in text and not path.suffix:
        if not pretrained.card_path(text).is_file():
            raise unknown_model(text)
        loaded = pretrained.load_bundled(text)
        return loaded, loaded["card_path"]
    return load_checkpoint(path), text


class ArrayReader:
    """An in-memory `(channels, n)` signal read like a `soundfile.SoundFile` (`read(n)` ->
    `(n, channels)`), so that arrays take the same streamed path as files."""

    def __init__(self, x: np.ndarray, samplerate: int) -> None:
        self.x = x
        self.channels, self.frames = int(x.shape[0]), int(x.shape[1])
        self.samplerate = int(samplerate)
        self.pos = 0

    def read(self, frames: int, dtype: str = "float32", always_2d: bool = True) -> np.ndarray:
        block = self.x[:, self.pos : self.pos + max(0, int(frames))]
        self.pos += block.shape[1]
        out = block.T.astype(dtype, copy=False)
        return out if always_2d or self.channels > 1 else out[:, 0]


class _ListWriter:
    def __init__(self) -> None:
        self.blocks: list[np.ndarray] = []

    def write(self, data: np.ndarray) -> None:
        self.blocks.append(np.array(data, dtype=np.float32))


class _Clipped:
    """Clips to full scale before an integer format would wrap the samples around."""

    def __init__(self, f: Any) -> None:
        self.f = f

    def write(self, data: np.ndarray) -> None:
        self.f.write(np.clip(data, -1.0, 1.0))


def as_signal(audio: Any) -> tuple[np.ndarray, bool]:
    """`(channels, n)` float32 of a numpy array or torch tensor `(n,)` / `(channels, n)`, and
    whether it was mono `(n,)`. Empty or non-finite audio is a DataError."""
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().to("cpu", torch.float32).numpy()
    x = np.asarray(audio, dtype=np.float32)
    mono = x.ndim == 1
    if x.ndim not in (1, 2):
        raise DataError(f"expected audio of shape (n,) or (channels, n), got shape {x.shape}")
    x = np.atleast_2d(x)
    if x.shape[1] == 0 or x.shape[0] == 0:
        raise DataError(f"the audio is empty (shape {x.shape})")
    if not np.isfinite(x).all():
        raise DataError("the audio holds non-finite samples (NaN or inf)")
    return np.ascontiguousarray(x), mono


def build_generator(ckpt: Mapping[str, Any], ratio: int, where: str) -> SuperResModel:
    """The generator of a loaded checkpoint (`checkpoint.load_checkpoint`): built from its stored
    model config through the allow-list, with the generator's weights only, in eval mode."""
    hp = ckpt["hyper_parameters"]
    try:
        model = instantiate_trusted(hp["model"], "model")
    except UserFacingError:
        raise
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: its model config cannot be built ({exc})") from exc
    if not isinstance(model, SuperResModel):
        raise CheckpointError(
            f"{where}: model {type(model).__module__}.{type(model).__qualname__} is not a "
            "SuperResModel (audio_superres.models.base)"
        )
    if model.ratio != ratio:
        raise CheckpointError(f"{where}: model ratio {model.ratio} differs from the ratio {ratio}")
    weights = generator_state_dict(ckpt["state_dict"])
    check_weights_fit(weights, model.state_dict(), where)
    model.load_state_dict(weights)
    return model.eval()


def _stored_int(hp: Mapping[str, Any], key: str, where: str) -> int:
    value = positive_int(hp.get(key))
    if value is None:
        raise CheckpointError(
            f"{where}: the checkpoint stores {key}={hp.get(key)!r}, not a positive whole number "
            "(a damaged or hand-edited checkpoint)"
        )
    return value


@dataclass
class SuperResolver:
    """A trained generator with everything needed to run it (see the module docstring)."""

    model: SuperResModel
    ratio: int
    sample_rate: int  # the model's high-res (output) rate
    training_lowpass: dict[str, Any]  # the filter the model was trained on (plain fields)
    settings: InferenceSettings = field(default_factory=InferenceSettings)
    device: torch.device = field(default_factory=lambda: resolve_device("auto"))
    input_conditioning: str = "auto"
    checkpoint: str | None = None
    info: dict[str, Any] = field(default_factory=dict)  # what the checkpoint's run stored

    def __post_init__(self) -> None:
        self.device = resolve_device(self.device)
        self.input_conditioning = conditioning_mode(self.input_conditioning)
        if self.sample_rate % self.ratio:
            raise ConfigError(f"sample_rate {self.sample_rate} is not a multiple of {self.ratio}")
        self.check_chunking()

    def check_chunking(self) -> None:
        """A ConfigError now, before any file is written, for chunk/overlap settings no chunk
        plan can honour (`inference.plan_chunks`' own checks)."""
        plan_chunks(
            1,
            self.ratio,
            self.settings.chunk,
            self.settings.overlap,
            hr_alignment(self.model),
            model_context(self.model),
        )

    # ---- building -----------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        device: str | torch.device = "auto",
        precision: str = "auto",
        *,
        input_conditioning: str = "auto",
        settings: InferenceSettings | None = None,
    ) -> SuperResolver:
        """Load a training checkpoint safely (`checkpoint.load_checkpoint`: weights only, only
        allow-listed classes built). `settings` (chunking) default to `InferenceSettings()`;
        `precision` (auto | 32 | bf16) overrides theirs."""
        ckpt = load_checkpoint(path)
        settings = replace(settings or InferenceSettings(), precision=precision)
        return cls.from_loaded(
            ckpt, str(path), device=device, settings=settings, input_conditioning=input_conditioning
        )

    @classmethod
    def from_loaded(
        cls,
        ckpt: Mapping[str, Any],
        where: str,
        *,
        ratio: int | None = None,
        sample_rate: int | None = None,
        device: str | torch.device = "auto",
        settings: InferenceSettings | None = None,
        input_conditioning: str = "auto",
    ) -> SuperResolver:
        """From a checkpoint `load_checkpoint` already read (`where`: its path, for errors);
        `ratio`/`sample_rate`: settled by the caller when given (upsample.py's overrides)."""
        hp = ckpt["hyper_parameters"]
        ratio = int(ratio) if ratio is not None else _stored_int(hp, "ratio", where)
        rate = (
            int(sample_rate) if sample_rate is not None else _stored_int(hp, "sample_rate", where)
        )
        if rate % ratio:
            raise ConfigError(f"{where}: sample_rate {rate} is not a multiple of {ratio}")
        try:
            trained = as_lowpass_spec(hp.get("lowpass", "chebyshev"))
            check_sample_rate(trained, rate)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, UserFacingError):
                raise
            raise CheckpointError(f"{where}: its training filter is unusable ({exc})") from exc
        model = build_generator(ckpt, ratio, where)
        info = {
            "global_step": ckpt.get("global_step"),
            "epoch": ckpt.get("epoch"),
            "objective": (hp.get("objective") or {}).get("_target_"),
            "data": (hp.get("data_config") or {}).get("_target_"),
            "model_config": dict(hp["model"]),
            "card": ckpt.get("card"),  # a bundled model's card (pretrained.py)
        }
        return cls(
            model=model,
            ratio=ratio,
            sample_rate=rate,
            training_lowpass=lowpass_to_dict(trained),
            settings=settings or InferenceSettings(),
            device=resolve_device(device),
            input_conditioning=input_conditioning,
            checkpoint=where,
            info=info,
        )

    @classmethod
    def from_pretrained(
        cls,
        name: str,
        device: str | torch.device = "auto",
        precision: str = "auto",
        *,
        input_conditioning: str = "auto",
        settings: InferenceSettings | None = None,
    ) -> SuperResolver:
        """A bundled model by name (`bundled_models()`, e.g. "speech-r4"), or an exported one
        by the path of its `.json` card or `.safetensors` weights (`audio-superres export`).
        Built exactly as `from_checkpoint` builds a checkpoint's generator (allow-list, weight
        checks); its model card is in `info["card"]`."""
        loaded, where = load_model(name)
        settings = replace(settings or InferenceSettings(), precision=precision)
        return cls.from_loaded(
            loaded, where, device=device, settings=settings, input_conditioning=input_conditioning
        )

    # ---- what it is ---------------------------------------------------------------------------
    @property
    def lr_rate(self) -> int:
        """The model's low-res (input) rate."""
        return self.sample_rate // self.ratio

    @property
    def precision(self) -> str:
        return self.settings.precision

    @property
    def model_config(self) -> dict[str, Any]:
        """The generator's config as its checkpoint stores it (`_target_` and arguments)."""
        config = self.info.get("model_config")
        if config is None:
            raise ValueError(
                "this SuperResolver holds no model config (it was not built from a checkpoint)"
            )
        return dict(config)

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def describe(self) -> str:
        return (
            f"{type(self.model).__name__} ({self.n_parameters:,} parameters), {self.ratio}x "
            f"{self.lr_rate} -> {self.sample_rate} Hz, trained on "
            f"{describe_lowpass(self.training_lowpass)}"
        )

    # ---- the streamed path --------------------------------------------------------------------
    def lowres(
        self,
        reader: Reader,
        rate: int,
        name: Any = "input",
        warn: bool = True,
        logger: logging.Logger | None = None,
    ) -> Reader:
        """`reader` (a signal at `rate`) at the model's low-res rate: as it is, or resampled
        block by block (`ResampledReader`: `dsp.resample.resample_audio`), which is logged."""
        rate = int(rate)
        if rate == self.lr_rate:
            return reader
        logger = logger or log
        (logger.warning if warn else logger.debug)(
            "%s: sample rate %d Hz is not the model's low-res rate %d Hz (%d / %d); "
            "resampling it first",
            name,
            rate,
            self.lr_rate,
            self.sample_rate,
            self.ratio,
        )
        return ResampledReader(reader, rate, self.lr_rate)

    def condition(
        self,
        reader: Reader,
        spectrum: Callable[[], PowerSpectrum],
        name: Any = "input",
        matched: bool = False,
        logger: logging.Logger | None = None,
    ) -> tuple[Reader, InputCheck | None]:
        """Issue 20: measure a low-res input (`spectrum()`: one pass over its own reader), log
        the check, and bring it to the training condition (`RefilteredReader`) only when its top
        band says so (`dsp.bandwidth.check_input`). `input_conditioning=off` measures nothing;
        `always` re-filters every input; `matched`: the input was made with the training filter
        itself (never re-filtered in auto). `logger`: whose log the lines go to (this module's).
        The decision is `dsp.bandwidth.conditioning_check`, the one evaluate.py's
        `input_conditioning` takes on the same samples (`dsp.bandwidth.condition_lowres`)."""
        if self.input_conditioning == "off":
            return reader, None
        trained = as_lowpass_spec(self.training_lowpass)
        # the one decision (evaluate.py's in-memory inputs: dsp.bandwidth.condition_lowres)
        check = conditioning_check(
            spectrum(), trained, self.ratio, self.input_conditioning, matched=matched
        )
        assert check is not None  # not off
        logger = logger or log
        logger.info("%s: %s", name, check.summary())
        if check.narrow:
            logger.warning(
                "%s: effective bandwidth %.0f Hz (%.2f of the low-res Nyquist) is much less than "
                "the training input's (%.2f): the model expects content up to about %.0f Hz",
                name,
                check.bandwidth_hz,
                check.bandwidth,
                check.expected_bandwidth,
                check.expected_bandwidth * check.nyquist_hz,
            )
        if check.refilter:
            reader = RefilteredReader(reader, trained)
        return reader, check

    def stream(
        self, reader: Reader, writer: Any, progress: Callable[[int], None] | None = None
    ) -> int:
        """Super-resolve a low-res `reader` (at `lr_rate`, already conditioned) into `writer`
        (`write((n, channels))`) through the one chunked path; returns the HR frames written."""
        return super_resolve_stream(
            self.model,
            reader,
            writer,
            self.ratio,
            **self.settings.kwargs(),
            device=self.device,
            progress=progress,
        )

    # ---- arrays and files ---------------------------------------------------------------------
    def sr(self, audio: Any, sample_rate: int) -> tuple[Any, int]:
        """Super-resolve `audio` (numpy or torch, `(n,)` or `(channels, n)`, any rate): returns
        `(audio, self.sample_rate)`, float32 of the input's kind and layout at the high rate.
        Input at another rate than `lr_rate` is resampled to it first (logged)."""
        rate = positive_int(sample_rate)
        if rate is None:
            raise ConfigError(f"sample_rate must be a positive whole number, got {sample_rate!r}")
        x, mono = as_signal(audio)

        def lowres(warn: bool) -> Reader:
            return self.lowres(ArrayReader(x, rate), rate, "input", warn=warn)

        reader, _ = self.condition(
            lowres(True), lambda: measure_reader(lowres(False), self.lr_rate)
        )
        out = _ListWriter()
        self.stream(reader, out)
        y = np.ascontiguousarray(np.concatenate(out.blocks, axis=0).T)  # (channels, n)
        y = y[0] if mono else y
        if isinstance(audio, torch.Tensor):
            return torch.from_numpy(y), self.sample_rate
        return y, self.sample_rate

    def sr_file(
        self,
        src: str | os.PathLike,
        dst: str | os.PathLike,
        progress: Callable[[int], None] | None = None,
    ) -> Path:
        """Super-resolve the audio file `src` into `dst` (WAV float32 or FLAC 24-bit, by its
        suffix), streamed block by block and written atomically; never over `src`.
        (`upsample.py` adds folders, peak handling, bad-file lists and the samples page.)"""
        src, dst = Path(src), Path(dst)
        fmt = _OUT_FORMATS.get(dst.suffix.lower())
        if fmt is None:
            raise ConfigError(f"{dst}: the output must be a .wav or .flac file")
        if src.exists() and dst.exists() and os.path.samefile(src, dst):
            raise DataError(f"{src}: the output would be written over this input")

        def lowres(warn: bool) -> tuple[Reader, FileReader]:
            f = FileReader(src)
            return self.lowres(f, f.samplerate, src, warn=warn), f

        def spectrum() -> PowerSpectrum:
            measured, f = lowres(False)
            with f:
                return measure_reader(measured, self.lr_rate)

        reader, f = lowres(True)
        with f:
            reader, _ = self.condition(reader, spectrum, src)
            with atomic_path(dst) as tmp, sf.SoundFile(
                str(tmp), "w", samplerate=self.sample_rate, channels=reader.channels,
                format=fmt[0], subtype=fmt[1],
            ) as out:  # fmt: skip
                self.stream(reader, _Clipped(out) if fmt[1].startswith("PCM") else out, progress)
        return dst
