"""Super-resolve recordings: `python upsample.py ckpt_path=CKPT input=FILE_OR_DIR output=DIR`."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="upsample")
def main(cfg: DictConfig) -> None:
    from audio_superres.errors import run_task
    from audio_superres.runs import single_lightning_log
    from audio_superres.tasks.upsample import upsample

    single_lightning_log()
    run_task(upsample, cfg)


if __name__ == "__main__":
    main()
