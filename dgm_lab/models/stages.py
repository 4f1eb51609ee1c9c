"""Training in consecutive stages, for any model: a DBN trains one layer per stage, a DBM its two
pretraining RBMs and then the joint model, and a VAE could warm up its encoder first.

A staged model lists the first epoch of each stage (``stage_starts``) and prepares a stage in
``begin_stage``. When a stage starts, each of its optimizers trains afresh: momentum and other
optimizer state are cleared, the LR is the configured one times ``stage_lr_scale[stage]``, and the
LR scheduler starts again; with several stages a cosine decays over the stage's own epochs
(T_max), so that every stage gets the whole schedule. The ``started_stage`` buffer travels in the
checkpoint: a run resumed at a stage boundary starts that stage exactly as a straight run does,
and one resumed inside a stage does not start it a second time.
"""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR

from dgm_lab.errors import require
from dgm_lab.models.base import GenerativeModule


class StagedModule(GenerativeModule):
    """Base (or first parent, before the model class) of models trained in stages.

    Args:
        stage_lr_scale: null, or one positive LR factor per stage.
    """

    def __init__(self, *, stage_lr_scale: list[float] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.stage_lr_scale = None if stage_lr_scale is None else [float(scale) for scale in stage_lr_scale]
        # The last stage whose start-up has run (-1: none yet).
        self.register_buffer("started_stage", torch.tensor(-1))

    # -- what a staged model defines ---------------------------------------------------------
    def stage_starts(self) -> list[int]:
        """First epoch of each training stage, in increasing order, starting at 0."""
        return [0]

    def begin_stage(self, stage: int) -> None:
        """Prepares ``stage`` (under no_grad), once: stages skipped by a resume are begun in order."""

    # -- the mechanism -------------------------------------------------------------------------
    def check_stages(self) -> None:
        """Validates ``stage_lr_scale`` against the stages; models call it once they are built."""
        scales, count = self.stage_lr_scale, len(self.stage_starts())
        require(scales is None or (len(scales) == count and min(scales) > 0),
                f"model.stage_lr_scale needs {count} positive factors, one per training stage, got {scales}.")

    def stage(self) -> int:
        """Index of the stage that the current epoch belongs to."""
        return max(i for i, start in enumerate(self.stage_starts()) if start <= self.current_epoch)

    def epochs_into_schedule(self) -> int:
        return self.current_epoch - self.stage_starts()[self.stage()]

    def restart_optimizers(self, stage: int) -> None:
        """Every optimizer trains afresh at ``stage``'s LR, and every scheduler starts again."""
        scale = self.stage_lr_scale[stage] if self.stage_lr_scale else 1.0
        optimizers = self.optimizers()
        for wrapped, lrs in zip(optimizers if isinstance(optimizers, list) else [optimizers], self.configured_lrs,
                                strict=True):
            optimizer = wrapped.optimizer  # Lightning's wrapper around the torch optimizer
            optimizer.state.clear()
            for group, lr in zip(optimizer.param_groups, lrs, strict=True):
                # initial_lr too: a new scheduler starts from it (torch only sets it when absent)
                group["lr"] = group["initial_lr"] = lr * scale
        if self.scheduler_factory is None:
            return
        for config in self.trainer.lr_scheduler_configs:
            config.scheduler = self.stage_scheduler(config.scheduler.optimizer, stage)

    def stage_scheduler(self, optimizer: torch.optim.Optimizer, stage: int):
        """A fresh scheduler for ``stage``; with several stages a cosine decays over the stage's
        epochs (the last stage: until trainer.max_epochs); one stage keeps the configured T_max."""
        scheduler = self.scheduler_factory(optimizer)
        starts = self.stage_starts()
        end = starts[stage + 1] if stage + 1 < len(starts) else self.trainer.max_epochs
        if len(starts) > 1 and isinstance(scheduler, CosineAnnealingLR) and end is not None and end > starts[stage]:
            scheduler.T_max = end - starts[stage]
        return scheduler

    def on_train_epoch_start(self) -> None:
        """Starts the stage this epoch begins (and any a resume skipped), then lets the base step
        the schedulers up to the epoch within the stage."""
        stage = self.stage()
        if stage > int(self.started_stage):
            with torch.no_grad():
                for skipped_or_new in range(int(self.started_stage) + 1, stage + 1):
                    self.begin_stage(skipped_or_new)
            self.restart_optimizers(stage)
            self.started_stage.fill_(stage)
        super().on_train_epoch_start()
