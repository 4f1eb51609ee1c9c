"""Lightning's ModelCheckpoint, with ``{epoch}`` in file names counting epochs from 1 as the
sample grids do: ``best-epoch001.ckpt`` and ``samples_epoch0001.png`` both come from the end of
the first epoch (Lightning's own ``{epoch}`` is the 0-based ``current_epoch``)."""

from __future__ import annotations

from pytorch_lightning.callbacks import ModelCheckpoint


class EpochNumberedCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose file names number epochs from 1; everything else is Lightning's."""

    def format_checkpoint_name(self, metrics, filename=None, ver=None, prefix=None) -> str:
        if "epoch" in metrics:
            metrics = {**metrics, "epoch": metrics["epoch"] + 1}
        return super().format_checkpoint_name(metrics, filename, ver, prefix)
