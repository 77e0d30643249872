"""Train a model: `python train.py [experiment=demo] data=... model=... ratio=4`."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    """Returns the best validation value of `optimized_metric` (default val/snr, in dB), the
    value a Hydra sweeper (conf/hparams_search/) optimises."""
    from audio_superres.errors import run_task
    from audio_superres.tasks.train import run_job

    return run_task(run_job, cfg)


if __name__ == "__main__":
    main()
