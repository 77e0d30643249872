"""Every benchmark, one command: one JSON line per figure.

    python -m audio_superres.bench [SECTION ...] [--quick] [options]   (make bench BENCH_ARGS=...)

Sections (default: the core five, which need nothing but this repository):
  peak      measured matmul and conv1d GFLOP/s: forward (inference) and forward + backward
            (training) peaks of the U-Net layer shapes
  model     training and inference throughput of --models against those peaks
  loader    the training DataLoader alone, and against each model's training step
  infer     chunked vs whole-file real-time factor; streaming peak RSS short vs long (fresh process)
  prepare   cache preparation of a synthetic 48 kHz FLAC corpus (hours of audio per minute)
  stream    chunked streaming inference per input length: peak host/CUDA memory and speed
  seams     chunked vs whole-file output on real recordings (--files, default the VCTK clips)
  upsample  upsample.py peak RSS and speed per input kind and length (--ckpt; fresh processes)
  cache     prepare a folder corpus (--corpus-root): throughput and peak memory
  step      an experiment's own training step (its losses, filter, optimiser; no Trainer):
            seconds per step in each --precision; --profile N prints the top N operators

`stream` and `seams` use --ckpt when given, else an untrained --infer-model.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from audio_superres.bench import core
from audio_superres.bench.records import emit

EXTRA_FIGURES = ("stream", "seams", "upsample", "cache", "step")
SECTIONS = (*core.CORE_FIGURES, *EXTRA_FIGURES)


def build_parser() -> argparse.ArgumentParser:
    """The one argparse front of every benchmark section."""
    from audio_superres.bench.upsample import DEFAULT_SECONDS, KINDS
    from audio_superres.data.cache import BAD_FILE_POLICIES
    from audio_superres.inference import DEFAULT_BATCH_SIZE, DEFAULT_CHUNK, DEFAULT_OVERLAP

    p = argparse.ArgumentParser(
        prog="python -m audio_superres.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("what", nargs="*", choices=[*SECTIONS, []],
                   help=f"sections to run (default: {' '.join(core.CORE_FIGURES)})")
    p.add_argument("--quick", action="store_true", help="tiny sizes (tests, busy machines)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    g = p.add_argument_group("peak / model / loader")
    g.add_argument("--models", nargs="+", default=None,
                   help=f"conf/model names (default: {' '.join(core.DEFAULT_MODELS)})")
    g.add_argument("--precision", nargs="+", choices=["auto", "32", "bf16"], default=["auto"],
                   help="model figures in each (auto: bf16 where the device computes it "
                   "natively, as train.py; e.g. --precision 32 bf16)")
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g.add_argument("--no-fused-adam", action="store_true", help="torch's per-op Adam loop")
    g.add_argument("--spec-peak-tflops", type=float, default=None,
                   help="vendor peak for MFU, e.g. 989 (H100 SXM dense bf16)")
    g.add_argument("--batch-size", type=int, default=None, help="default: per model")
    g.add_argument("--patch-len", type=int, default=None, help="HR samples (8192)")
    g.add_argument("--steps", type=int, default=None, help="timed repeats (best of)")
    g.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    g.add_argument("--loader-batches", type=int, default=None)
    g.add_argument("--data-root", default=None, help="a folder corpus (default: demo)")
    g.add_argument("--cache-dir", default="data/cache", help="loader's and cache's cache dir")
    g = p.add_argument_group("infer / stream / seams")
    g.add_argument("--ckpt", default=None, help="a checkpoint (upsample: required)")
    g.add_argument("--infer-model", default="audiounet_small",
                   help="conf/model name used untrained when no --ckpt is given")
    g.add_argument("--final-std", type=float, default=0.3,
                   help="std of the untrained model's last conv (so the net shapes the output)")
    g.add_argument("--infer-seconds", type=float, nargs=2, default=None,
                   metavar=("SHORT", "LONG"), help="infer: default 10 600 (quick: 2 20)")
    g.add_argument("--stream-seconds", type=float, nargs="+", default=None,
                   help="stream: input lengths (default 30 1800; quick: 1 4)")
    g.add_argument("--files", nargs="*", default=None,
                   help="seams: real recordings (default: the VCTK test clips)")
    g.add_argument("--chunk", type=int, default=DEFAULT_CHUNK, help="LR samples per chunk")
    g.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP)
    g.add_argument("--chunk-batch", type=int, default=DEFAULT_BATCH_SIZE,
                   help="chunks per forward pass")
    g = p.add_argument_group("upsample")
    g.add_argument("--upsample-seconds", type=float, nargs="+", default=None,
                   help=f"input lengths (default {' '.join(f'{s:g}' for s in DEFAULT_SECONDS)}; "
                   "quick: 1 3)")
    g.add_argument("--upsample-kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    g.add_argument("--speech", nargs="*", default=[],
                   help="real recordings to tile (default: the VCTK test clips)")
    g.add_argument("--upsample-overrides", nargs="*", default=[],
                   help="more upsample.py overrides, e.g. batch_size=4")
    g.add_argument("--workdir", default=None, help="upsample inputs/outputs (default: a tmp dir)")
    g = p.add_argument_group("step")
    g.add_argument("--experiment", nargs="+", default=["demo", "demo_apbwe"],
                   help="conf/experiment names (default: demo demo_apbwe)")
    g.add_argument("--step-overrides", nargs="*", default=[],
                   help="more train.py overrides, e.g. loss=apbwe")
    g.add_argument("--profile", type=int, default=0, metavar="N",
                   help="print torch.profiler's top N operators (self CPU time) per step figure")
    g = p.add_argument_group("prepare / cache")
    g.add_argument("--prepare-hours", type=float, default=None)
    g.add_argument("--prepare-workers", type=int, default=-1, help="decoding processes (-1: all)")
    g.add_argument("--corpus-root", type=Path, default=None,
                   help="cache: root/<speaker>/*.{wav,flac,ogg}")
    g.add_argument("--sample-rate", type=int, default=16000, help="cache: target rate")
    g.add_argument("--trim-silence", action="store_true")
    g.add_argument("--on-bad-file", choices=BAD_FILE_POLICIES, default="error")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the asked sections in a fixed order; every figure prints one JSON line."""
    parser = build_parser()
    args = parser.parse_args(argv)
    what = set(args.what or core.CORE_FIGURES)
    device = core.resolve_device(args.device)
    if "upsample" in what and not args.ckpt:
        parser.error("upsample needs --ckpt (a trained checkpoint to run upsample.py with)")
    if "cache" in what and args.corpus_root is None:
        parser.error("cache needs --corpus-root (a folder of recordings)")
    quick = args.quick
    steps = args.steps or (1 if quick else 2)
    patch_len = args.patch_len or (2048 if quick else 8192)

    precisions = core.precisions_of(args.precision, device)
    peak = core.machine_peak(device, quick, precisions=precisions) if "peak" in what else None
    trained: dict[str, tuple[int, float]] = {}
    if "model" in what:
        for name in args.models or (["audiounet_small"] if quick else core.DEFAULT_MODELS):
            batch = args.batch_size or core.default_batch(name, device, quick)
            for precision in precisions:
                rates = core.model_throughput(
                    name, device, peak, batch_size=batch, patch_len=patch_len, steps=steps,
                    precision=precision, compile_model=args.compile,
                    fused_adam=not args.no_fused_adam, spec_peak_tflops=args.spec_peak_tflops)
                trained[name] = (batch, rates["train"])
    if "loader" in what:
        batch = args.batch_size or 16
        batches = args.loader_batches or (20 if quick else 300)
        supplied = core.loader_throughput(batch, patch_len, batches, args.workers,
                                          args.data_root, args.cache_dir)
        for name, (train_batch, consumed) in trained.items():
            emit({"figure": "loader_vs_train", "model": name, "num_workers": args.workers,
                  "train_batch_size": train_batch, "loader_batch_size": batch,
                  "loader_audio_s_per_s": round(supplied, 2),
                  "train_audio_s_per_s": round(consumed, 3),
                  "ratio": round(supplied / consumed, 1)})
    if "infer" in what:
        short_s, long_s = args.infer_seconds or ((2.0, 20.0) if quick else (10.0, 600.0))
        core.inference_figures(args.infer_model, device, short_s, long_s, steps)
    if "prepare" in what:
        hours = args.prepare_hours or (0.005 if quick else 0.25)
        core.prepare_throughput(hours, args.prepare_workers)
    if what & {"stream", "seams"}:
        run_stream_and_seams(args, what, device, quick)
    if "upsample" in what:
        from audio_superres.bench.upsample import DEFAULT_SECONDS, upsample_figures

        seconds = args.upsample_seconds or ((1.0, 3.0) if quick else DEFAULT_SECONDS)
        upsample_figures(args.ckpt, seconds, args.upsample_kinds, args.speech,
                         args.upsample_overrides, args.workdir)
    if "step" in what:
        from audio_superres.bench.step import training_step_figure

        for experiment in args.experiment:
            for precision in precisions:
                training_step_figure(
                    experiment, device, precision, steps=args.steps or (2 if quick else 10),
                    batch_size=args.batch_size or (2 if quick else None),
                    patch_len=args.patch_len or (2048 if quick else None),
                    overrides=args.step_overrides, profile_rows=args.profile)
    if "cache" in what:
        from audio_superres.bench.prepare import prepare_folder

        prepare_folder(args.corpus_root, args.sample_rate, Path(args.cache_dir),
                       args.prepare_workers, args.trim_silence, args.on_bad_file)
    return 0


def run_stream_and_seams(args: argparse.Namespace, what: set[str], device: object,
                         quick: bool) -> None:
    """The chunked-inference sections, on one model (a checkpoint's or an untrained config)."""
    from audio_superres.bench.inference import load_bench_model, seam_figures, stream_figures
    from audio_superres.bench.upsample import default_speech

    model, ratio, sr, lowpass = load_bench_model(args.ckpt, args.infer_model, args.final_std)
    kw = {"chunk": args.chunk, "overlap": args.overlap, "batch_size": args.chunk_batch}
    if "seams" in what:
        files = args.files if args.files is not None else default_speech()
        if not files:
            raise SystemExit("error: seams needs recordings: pass --files a.wav ...")
        seam_figures(model, ratio, sr, lowpass, files, **kw)
    if "stream" in what:
        seconds = args.stream_seconds or ((1.0, 4.0) if quick else (30.0, 1800.0))
        stream_figures(model, ratio, sr // ratio, seconds, str(device), **kw)
