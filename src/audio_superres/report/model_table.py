"""Every model under the same CPU training budget on the demo corpus, next to cubic.

    python -m audio_superres.report.model_table [--minutes 5] [--models audiounet_small ...]

Each model trains with `experiment=demo` for the same wall-clock budget (`trainer.max_time`,
constant learning rate, since a schedule tied to a step count would favour the cheaper models),
then its best checkpoint is evaluated on the held-out languages. Prints a markdown table (and
writes table.md) with parameters, GFLOP per second of audio, and held-out SNR / LSD / LSD-HF.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from audio_superres.utils import atomic_write_text

REPO = Path(__file__).resolve().parents[3]
DEFAULT_MODELS = ("audiounet_small", "tfilm_small", "dnn")


def _run(args: list[str]) -> str:
    proc = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def _cost(model: str) -> tuple[int, float]:
    from omegaconf import OmegaConf

    from audio_superres.checkpoint import instantiate_trusted
    from audio_superres.models.summary import model_summary
    from audio_superres.runs import compose_config

    cfg = compose_config(["experiment=demo", f"model={model}"])
    net = instantiate_trusted(OmegaConf.to_container(cfg.model, resolve=True))
    s = model_summary(net, cfg.ratio, cfg.sample_rate)
    return int(s["parameters"]), float(s["gflop_per_second"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="training budget per model")
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--out", type=Path, default=Path("outputs/models_table"))
    parser.add_argument("--lr", type=float, default=2e-3)
    args = parser.parse_args(argv)
    out = args.out.resolve()
    seconds = int(args.minutes * 60)
    budget = f"00:{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    rows, cubic = [], None
    for model in args.models:
        run_dir = out / model
        _run(["train.py", "experiment=demo", f"model={model}", "logger=csv",
              "test_after_fit=false", "trainer.max_steps=100000", f"trainer.max_time={budget}",
              "trainer.val_check_interval=50", f"optimizer.lr={args.lr}",
              "scheduler.warmup_steps=0", "scheduler.min_lr_ratio=1.0",  # a constant lr,
              f"hydra.run.dir={run_dir}"])
        metrics_path = Path(_run(["evaluate.py", f"ckpt_path={run_dir}/checkpoints/best.ckpt",
                                  f"hydra.run.dir={run_dir}/eval"]).strip().splitlines()[-1])
        metrics = json.loads(metrics_path.read_text())
        params, gflops = _cost(model)
        rows.append((model, params, gflops, metrics["model"]))
        cubic = metrics["cubic"]
        print(f"{model}: {metrics['model']}", flush=True)
    lines = [
        f"Held-out languages of the demo corpus, r=4, Chebyshev input, {args.minutes:g} minutes "
        "of CPU training each (constant lr), best checkpoint:",
        "",
        "| model | parameters | GFLOP per s of audio | SNR dB | LSD | LSD-HF |",
        "|---|---|---|---|---|---|",
    ]
    if cubic is not None:
        lines.append(f"| cubic | 0 | 0.002 | {cubic['snr']:.2f} | {cubic['lsd']:.2f} | "
                     f"{cubic['lsd_hf']:.2f} |")
    for model, params, gflops, m in rows:
        lines.append(f"| {model} | {params:,} | {gflops:.3g} | {m['snr']:.2f} | {m['lsd']:.2f} | "
                     f"{m['lsd_hf']:.2f} |")
    table = "\n".join(lines) + "\n"
    atomic_write_text(out / "table.md", table)
    print(table)


if __name__ == "__main__":
    main()
