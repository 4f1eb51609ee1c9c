"""The last validation's metrics, carried in every checkpoint.

A run resumed from a checkpoint written after its last epoch (one killed while testing or while
writing its summary) validates no more, so Lightning's metrics then lack the ``val/*`` values a
straight run reports; they come from the checkpoint instead, so that both summaries agree.
"""

from __future__ import annotations

import pytorch_lightning as pl

from dgm_lab.run_folder import scalar_metrics

KEY = "last_validation_metrics"


class ValidationRecord(pl.Callback):
    def __init__(self):
        self.restored: dict[str, float] = {}  # the val/* scalars of the checkpoint resumed from

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        metrics = scalar_metrics(trainer.callback_metrics)
        checkpoint[KEY] = {key: value for key, value in metrics.items() if key.startswith("val/")}

    def on_load_checkpoint(self, trainer, pl_module, checkpoint):
        # Only the checkpoint a fit resumes from: the test that follows loads the *best* checkpoint,
        # whose older validation must not stand in for the last one (a GAN whose best FID came an
        # epoch before the end reported that epoch's val/* after a resume).
        if trainer.state.fn == "fit":
            self.restored = dict(checkpoint.get(KEY) or {})


def carried_metrics(callbacks: list) -> dict[str, float]:
    """The val/* metrics of the checkpoint the run resumed from (empty for a fresh run)."""
    return next((c.restored for c in callbacks if isinstance(c, ValidationRecord)), {})
