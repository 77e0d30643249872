"""`audio-superres`: the console command (argparse, no Hydra) for people who want to use a model.

    audio-superres upsample IN... -o OUT [--model NAME | --ckpt PATH] [--report] [--device D]
                   [--precision P] [--format wav|flac] [--peak warn|clip|normalize]
                   [--input-kind lr|hr] [--input-conditioning auto|off|always]
    audio-superres models        # the bundled models and what each expects
    audio-superres info CKPT     # ratio, rates, model, training filter, steps, what the run stored

`upsample` is upsample.py's file handling (`tasks.upsample`: never-overwrite checks, folders
mirrored, bad files skipped and listed in OUT/failed.csv with exit status 1, peak handling, the
samples page) with its model built by `SuperResolver`. Errors are one line,
`Error: <file>: <problem>`, exit status 1 (130 for Ctrl-C), as the Hydra scripts give them
(`errors.run_task`). The Hydra scripts (train.py, evaluate.py, upsample.py) stay the research
interface: every setting, sweeps, run folders.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from audio_superres.dsp.bandwidth import CONDITIONING_MODES
from audio_superres.errors import (
    INTERRUPTED,
    INTERRUPTED_STATUS,
    ConfigError,
    DataError,
    PathNotFoundError,
    UserFacingError,
    one_line,
)
from audio_superres.inference import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CHUNK,
    DEFAULT_OVERLAP,
)
from audio_superres.resolver import (
    HOW_TO_TRAIN,
    SuperResolver,
    bundled_models,
)

log = logging.getLogger("audio_superres.cli")
DEFAULT_MODEL = "speech-r4"  # what `upsample` runs without --model/--ckpt, once bundled


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="audio-superres",
        description="Super-resolve audio recordings with a trained model.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = sub.add_parser(
        "upsample", help="super-resolve audio files or folders into OUT",
        description="Super-resolve audio files or folders (mirrored) into the folder OUT.",
    )  # fmt: skip
    up.add_argument("inputs", nargs="+", metavar="IN", help="an audio file or a folder")
    up.add_argument("-o", "--output", required=True, metavar="OUT", help="the output folder")
    which = up.add_mutually_exclusive_group()
    which.add_argument(
        "--model", metavar="NAME",
        help=f"a bundled model (audio-superres models; default {DEFAULT_MODEL}) or an exported "
        "model's .json card",
    )  # fmt: skip
    which.add_argument("--ckpt", metavar="PATH", help="a training checkpoint (.ckpt)")
    up.add_argument("--report", action="store_true", help="write OUT/report/index.html")
    up.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    up.add_argument("--precision", default="auto", help="auto | 32 | bf16 (default: auto)")
    up.add_argument("--format", default="wav", help="wav (float32) | flac (24-bit)")
    up.add_argument("--peak", default="warn", help="warn | clip | normalize (default: warn)")
    up.add_argument("--input-kind", default="lr", help="lr (default) | hr: degrade it first")
    up.add_argument(
        "--input-conditioning", default="auto", help=f"{' | '.join(CONDITIONING_MODES)}"
    )
    up.add_argument("--quiet", action="store_true", help="warnings and errors only")
    sub.add_parser("models", help="the bundled models and what each expects")
    info = sub.add_parser("info", help="what a checkpoint or bundled model holds")
    info.add_argument("ckpt", metavar="CKPT|NAME")
    exp = sub.add_parser(
        "export", help="a checkpoint's generator as safetensors + JSON model card",
        description="Write OUT/NAME.safetensors (the generator's weights) and OUT/NAME.json (its "
        "model card) from a training checkpoint; `--model OUT/NAME.json` then runs it.",
    )  # fmt: skip
    exp.add_argument("ckpt", metavar="CKPT")
    exp.add_argument("--name", required=True, help="the model's name, e.g. speech-r4")
    exp.add_argument("-o", "--output", required=True, metavar="OUT", help="the folder")
    exp.add_argument("--description", default="", help="one line: what the model is for")
    exp.add_argument(
        "--eval", action="append", default=[], metavar="LABEL=DIR",
        help="an evaluate.py output folder to record in the card (repeatable)",
    )  # fmt: skip
    return p


def checkpoint_of(args: argparse.Namespace) -> str:
    """The model `--ckpt` or `--model` names; with neither, the default bundled model."""
    if args.ckpt:
        return str(args.ckpt)
    if args.model:
        return str(args.model)
    if DEFAULT_MODEL in bundled_models():
        return DEFAULT_MODEL
    raise ConfigError(f"pass --ckpt PATH (no model is bundled: {HOW_TO_TRAIN})")


def upsample_config(args: argparse.Namespace, ckpt: str) -> Any:
    """upsample.py's settings (conf/upsample.yaml) from the command's options."""
    from omegaconf import OmegaConf

    return OmegaConf.create(
        {
            "ckpt_path": ckpt,
            "input_kind": args.input_kind,
            "lowpass": None,
            "input_conditioning": args.input_conditioning,
            "format": args.format,
            "on_bad_file": "skip",
            "peak": args.peak,
            "ratio": None,
            "sample_rate": None,
            "device": args.device,
            "precision": args.precision,
            "inference": {
                "chunk": DEFAULT_CHUNK,
                "overlap": DEFAULT_OVERLAP,
                "batch_size": DEFAULT_BATCH_SIZE,
                "precision": args.precision,
            },
            "report": args.report,
        }
    )


def upsample_command(args: argparse.Namespace) -> Path:
    """Every input into OUT: one input as upsample.py does it; with several, files go into OUT
    and each folder into OUT/<its name>. Bad files are skipped, named, and listed in
    OUT/failed.csv (exit status 1); a single input file's own error is the message."""
    from dataclasses import replace

    from tqdm import tqdm

    from audio_superres.tasks.upsample import (
        UpsampleOptions,
        Upsampler,
        check_no_input_overwritten,
        find_inputs,
        finish_run,
        prepare_output,
        process_files,
    )

    ckpt = checkpoint_of(args)
    cfg = upsample_config(args, ckpt)
    opts = UpsampleOptions.from_config(cfg)
    srcs = [Path(p) for p in args.inputs]
    dst = Path(args.output)
    for src in srcs:
        if not src.exists() and not src.is_symlink():
            raise PathNotFoundError(f"{src}: input not found (give an audio file or a folder)")
    groups: list[tuple[Path, list[tuple[Path, Path]]]] = []
    for src in srcs:
        into = dst if len(srcs) == 1 or not src.is_dir() else dst / src.name
        groups.append((src, find_inputs(src, into, opts.ext)))
    seen: dict[Path, Path] = {}
    for _, pairs in groups:
        for path, out in pairs:
            if out in seen:
                raise DataError(f"{path} and {seen[out]} would both be written to {out}")
            seen[out] = path
    every = [pair for _, pairs in groups for pair in pairs]
    check_no_input_overwritten(every)
    if len(srcs) == 1 and not srcs[0].is_dir():
        opts = replace(opts, on_bad_file="error")  # one file: its own error is the message
    up = Upsampler.from_config(cfg)
    prepare_output(dst, every)
    log.info("%s: %d file(s), %dx to %d Hz on %s", ckpt, len(every), up.ratio, up.sample_rate,
             up.device)  # fmt: skip
    card = up.resolver.info.get("card")
    if card:  # a bundled model: what it does to speech, as its card measured it
        for line in model_lines(card["name"], card)[3:]:
            log.info("%s:%s", card["name"], line[1:])
    done: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []
    for src, pairs in groups:
        bar = tqdm(pairs, unit="file", disable=args.quiet or len(every) == 1)
        d, f = process_files(up, pairs, src, dst, opts, bar)
        if len(srcs) > 1 and src.is_dir():
            for item in d:
                item["rel"] = Path(src.name) / item["rel"]
        done += d
        failed += f
    where = Path(" ".join(str(s) for s in srcs))
    return finish_run(up, done, failed, len(every), where, dst, opts, bool(args.report))


def models_command(args: argparse.Namespace) -> None:
    models = bundled_models()
    if not models:
        print(f"No model is bundled: {HOW_TO_TRAIN}.")
        return
    for name, card in sorted(models.items()):
        print("\n".join(model_lines(name, card)))


def model_lines(name: str, card: dict[str, Any]) -> list[str]:
    """What `audio-superres models` prints about one bundled model."""
    from audio_superres.dsp.lowpass import as_lowpass_spec, describe_lowpass

    rate, ratio = int(card["sample_rate"]), int(card["ratio"])
    default = " (the default)" if name == DEFAULT_MODEL else ""
    lines = [
        f"{name}{default}: {card.get('description', '')}".rstrip(),
        f"  input: audio at {rate // ratio} Hz (other rates are resampled to it first); "
        f"output: {rate} Hz ({ratio}x)",
        f"  model: {card['model']['_target_'].rsplit('.', 1)[-1]}, "
        f"{card['weights'].get('parameters', 0):,} parameters",
        f"  trained on: {describe_lowpass(as_lowpass_spec(card['training_lowpass']))}",
    ]
    for label, result in (card.get("evaluation") or {}).items():
        if "model" in result and "cubic" in result:
            m, c = result["model"], result["cubic"]
            lines.append(
                f"  {label}: SNR {m['snr']:.2f} dB (cubic {c['snr']:.2f}), "
                f"LSD {m['lsd']:.2f} (cubic {c['lsd']:.2f})"
            )
        elif "worst_snr_gain" in result:
            lines.append(
                f"  {label}: worst SNR gain over cubic {result['worst_snr_gain']:+.2f} dB "
                f"({result.get('worst_condition')}), mean {result['mean_snr_gain']:+.2f} dB"
            )
    return lines


def info_lines(resolver: SuperResolver) -> list[str]:
    """What `audio-superres info` prints about a checkpoint."""
    from audio_superres.dsp.lowpass import describe_lowpass

    model = resolver.model
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    info = resolver.info
    step = info.get("global_step")
    epoch = info.get("epoch")
    steps = "not stored" if step is None else f"{step}" + (f" (epoch {epoch})" if epoch else "")
    cls = f"{type(model).__module__}.{type(model).__qualname__}"
    stored = {k: v for k, v in info.get("model_config", {}).items() if k != "_target_"}
    return [
        f"checkpoint: {resolver.checkpoint}",
        f"model: {cls}, {resolver.n_parameters:,} parameters ({size / 1e6:.2f} MB)",
        f"model config: {stored}",
        f"ratio: {resolver.ratio} ({resolver.lr_rate} Hz in -> {resolver.sample_rate} Hz out)",
        f"training filter: {describe_lowpass(resolver.training_lowpass)}",
        f"steps: {steps}",
        f"objective: {info.get('objective') or 'not stored'}",
        f"data: {info.get('data') or 'not stored'}",
    ] + (model_lines(card["name"], card)[1:] if (card := info.get("card")) else [])


def info_command(args: argparse.Namespace) -> None:
    resolver = SuperResolver.from_pretrained(args.ckpt, device="cpu", precision="32")
    print("\n".join(info_lines(resolver)))


def export_command(args: argparse.Namespace) -> None:
    from audio_superres.export import export_bundled, model_card_fields

    fields = model_card_fields(args.ckpt, args.eval, description=args.description)
    card = export_bundled(args.ckpt, args.name, args.output, fields)
    print(f"wrote {card} and {card.with_suffix('.safetensors')}")


COMMANDS = {
    "upsample": upsample_command,
    "models": models_command,
    "info": info_command,
    "export": export_command,
}


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: 0 on success, 1 with one line `Error: ...` on stderr, 130 for
    Ctrl-C; argparse's own usage errors exit 2."""
    args = parser().parse_args(argv)
    quiet = getattr(args, "quiet", False)
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="[%(levelname)s] %(message)s",
        stream=sys.stderr,
    )
    try:
        COMMANDS[args.command](args)
    except KeyboardInterrupt as exc:
        print(f"Interrupted: {one_line(exc) if str(exc).strip() else INTERRUPTED}",
              file=sys.stderr)  # fmt: skip
        return INTERRUPTED_STATUS
    except UserFacingError as exc:
        print(f"Error: {one_line(exc)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
