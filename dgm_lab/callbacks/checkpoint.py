"""Lightning's ModelCheckpoint, with ``{epoch}`` in file names counting epochs from 1 as the
sample grids do: ``best-epoch001.ckpt`` and ``samples_epoch0001.png`` both come from the end of
the first epoch (Lightning's own ``{epoch}`` is the 0-based ``current_epoch``)."""

from __future__ import annotations

from pytorch_lightning.callbacks import ModelCheckpoint


class EpochNumberedCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose file names number epochs from 1 and whose last.ckpt follows every epoch."""

    def format_checkpoint_name(self, metrics, filename=None, ver=None, prefix=None) -> str:
        if "epoch" in metrics:
            metrics = {**metrics, "epoch": metrics["epoch"] + 1}
        return super().format_checkpoint_name(metrics, filename, ver, prefix)

    # Lightning 2.6 writes last.ckpt only in a step where a top-k checkpoint was written: when the
    # monitored metric does not improve, last.ckpt would lag behind the run, and a resume would
    # train those epochs again. Here last.ckpt follows every epoch end.
    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        self._keep_last_current(trainer, at_train_epoch_end=True)

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        self._keep_last_current(trainer, at_train_epoch_end=False)

    def _keep_last_current(self, trainer, at_train_epoch_end: bool) -> None:
        if (self.save_last and self._should_save_on_train_epoch_end(trainer) == at_train_epoch_end
                and not self._should_skip_saving_checkpoint(trainer)):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
