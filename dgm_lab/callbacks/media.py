"""Image files a callback wrote, sent to every attached W&B logger (the PNG in the run folder is
the record; W&B gets a copy)."""

from __future__ import annotations

from pytorch_lightning.loggers import WandbLogger


def log_images(trainer, key: str, paths: list[str]) -> None:
    """Log the PNGs at ``paths`` under ``key`` at the trainer's global step, to W&B loggers only."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[str(p) for p in paths], step=trainer.global_step)
