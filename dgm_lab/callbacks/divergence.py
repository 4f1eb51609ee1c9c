"""Stop a run whose loss turned NaN/inf before it overwrites a good checkpoint."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from dgm_lab.errors import DivergedError


class DivergenceGuard(pl.Callback):
    """Tracks non-finite training losses without a device sync per step.

    A flag tensor is OR-ed every step; every ``check_every_n_steps`` steps, and before every
    validation (which is when checkpoints are written), all ranks agree on it together so that
    no rank stops while the others wait.
    """

    def __init__(self, check_every_n_steps: int = 50):
        self.check_every_n_steps = max(1, int(check_every_n_steps))
        self._bad: torch.Tensor | None = None
        self._first_bad_step: int | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        bad = ~torch.isfinite(loss.detach()).all()
        self._bad = bad if self._bad is None else self._bad | bad
        if (trainer.global_step % self.check_every_n_steps) == 0:
            self._check(trainer)

    def on_validation_start(self, trainer, pl_module):
        if trainer.training or trainer.state.fn == "fit":
            self._check(trainer)

    def on_train_epoch_end(self, trainer, pl_module):
        self._check(trainer)

    def _check(self, trainer) -> None:
        if self._bad is None:
            return
        local = bool(self._bad)
        any_bad = trainer.strategy.reduce_boolean_decision(local, all=False)
        if any_bad:
            raise DivergedError(
                f"the training loss became NaN or infinite by step {trainer.global_step}; lower "
                "optimizer.lr, add trainer.gradient_clip_val, or check the data range. Checkpoints "
                "written before this point are kept."
            )
        self._bad = None
