"""Evaluate a checkpoint or model=cubic: `python evaluate.py ckpt_path=CKPT [data=...]`."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from audio_superres.errors import run_task
    from audio_superres.tasks.evaluate import evaluate

    run_task(evaluate, cfg)


if __name__ == "__main__":
    main()
