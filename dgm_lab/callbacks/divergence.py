"""What a run does when its loss or gradients turn NaN/inf (``trainer.nan_policy``):

- ``stop`` (default): end the run with status ``diverged`` before a checkpoint is overwritten,
  naming the step and the offending value; the checkpoints written before it are kept;
- ``skip``: drop the batch (its optimizer step does not happen), count it, and stop when
  ``trainer.nan_patience`` batches in a row were dropped;
- ``rollback``: return the weights and optimizer states to the last good checkpoint (the state at
  fit start before the first one), scale every learning rate by ``trainer.nan_lr_factor``, and
  stop at the ``nan_patience + 1``-th rollback.

All ranks decide together (``strategy.reduce_boolean_decision``), so no rank stops while the others
wait. ``stop`` agrees every ``check_every_n_steps`` steps and before every validation (when
checkpoints are written), without a device sync per step; ``skip`` and ``rollback`` must decide
before each optimizer step, so they agree at every step.

``stop`` looks at the weights at those checks instead of at every step's gradients: a NaN or
infinite gradient reaches the weights through the optimizer step (and the next loss), so one pass
over the weights per check finds what a per-step pass over the gradients would, at a fiftieth of
its cost (the per-step pass was about a tenth of an MLP VAE's step on one CPU thread). It also
leaves alone the infinite gradients that a float16 loss scaler skips on purpose.
"""

from __future__ import annotations

import copy

import pytorch_lightning as pl
import torch

from dgm_lab.errors import DivergedError, require

POLICIES = ("stop", "skip", "rollback")
# The trainer config's settings of this callback (not pl.Trainer arguments; builders removes them).
TRAINER_SETTINGS = ("nan_policy", "nan_patience", "nan_lr_factor")


def all_finite(tensors) -> bool:
    """Whether every element of every tensor is finite; one device sync for all of them."""
    flags = [torch.isfinite(t).all() for t in tensors]
    return bool(torch.stack(flags).all()) if flags else True


class DivergenceGuard(pl.Callback):
    def __init__(self, check_every_n_steps: int = 50, policy: str = "stop", patience: int = 3,
                 lr_factor: float = 0.5):
        require(policy in POLICIES, f"trainer.nan_policy must be one of {', '.join(POLICIES)}, got {policy!r}.")
        require(isinstance(patience, int) and patience >= 1, f"trainer.nan_patience must be an integer >= 1, got {patience!r}.")
        require(isinstance(lr_factor, int | float) and 0 < lr_factor < 1,
                f"trainer.nan_lr_factor must be a number in (0, 1), got {lr_factor!r}.")
        self.check_every_n_steps = max(1, int(check_every_n_steps))
        self.policy, self.patience, self.lr_factor = policy, patience, float(lr_factor)
        # stop: (step, detached loss) of every batch since the last check, tested together there
        self._losses: list[tuple[int, torch.Tensor]] = []
        self._good: dict | None = None  # rollback: weights and optimizer states of the last good checkpoint
        self._last_bad_batch, self._in_a_row = None, 0
        self.diagnostics: dict = {}  # summary.json: skipped batches, rollbacks

    # -- stop: the losses are tested at the checks, without a device sync or a kernel per step ---
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._batch_step = trainer.global_step  # the step a bad loss is reported at (the count is one on after it)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if self.policy == "stop" and loss is not None:
            # a reference only: testing each loss as it comes cost about 0.1 ms per step on a CPU
            self._losses.append((getattr(self, "_batch_step", trainer.global_step), loss.detach()))
        if self.policy == "stop" and (trainer.global_step % self.check_every_n_steps) == 0:
            self._check(trainer)

    def _first_bad_loss(self) -> tuple[int, float] | None:
        """(step, value) of the first non-finite loss since the last check, or None; one sync."""
        if not self._losses:
            return None
        # each loss summed to one number: NaN and infinities survive the sum
        totals = torch.stack([loss.float().sum() for _, loss in self._losses])
        bad = ~torch.isfinite(totals)
        if not bool(bad.any()):
            return None
        first = int(bad.nonzero()[0, 0])
        return self._losses[first][0], float(totals[first])

    def on_validation_start(self, trainer, pl_module):
        if trainer.training or trainer.state.fn == "fit":
            self._check(trainer)

    def on_train_epoch_end(self, trainer, pl_module):
        self._check(trainer)

    def _check(self, trainer) -> None:
        # the weights too: a model whose training_step returns no loss (manual optimization) flags nothing
        first_bad = self._first_bad_loss()
        weights_bad = not all_finite(trainer.lightning_module.parameters())
        any_bad = trainer.strategy.reduce_boolean_decision(first_bad is not None or weights_bad, all=False)
        if any_bad:
            if first_bad is not None:  # this rank saw the bad loss
                step, value = first_bad
                what = f"the training loss became {'NaN' if value != value else value} at step {step}"
            else:
                what = f"the training loss or the weights became NaN or infinite by step {trainer.global_step}"
            raise DivergedError(
                f"{what}; lower optimizer.lr, add trainer.gradient_clip_val, "
                "set trainer.nan_policy=skip or rollback, or check the data range. Checkpoints written before "
                "this point are kept."
            )
        self._losses = []

    # -- every policy: gradients before each optimizer step -------------------------------------
    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if self.policy == "stop":  # the weights are checked instead (module docstring)
            return
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not trainer.strategy.reduce_boolean_decision(not all_finite(grads), all=False):
            if trainer.fit_loop.total_batch_idx != self._last_bad_batch:
                self._in_a_row = 0
            return
        for group in optimizer.param_groups:  # no gradient: the optimizer leaves the parameter alone
            for parameter in group["params"]:
                parameter.grad = None
        batch = trainer.fit_loop.total_batch_idx
        if batch != self._last_bad_batch:  # a GAN steps two optimizers per batch: count batches
            self._last_bad_batch, self._in_a_row = batch, self._in_a_row + 1
            self._count("skipped_batches" if self.policy == "skip" else "rollbacks")
            if self.policy == "skip" and self._in_a_row >= self.patience:
                raise DivergedError(f"{self._in_a_row} batches in a row had NaN or infinite gradients (the last at "
                                    f"step {trainer.global_step}); lower optimizer.lr or raise trainer.nan_patience.")
            if self.policy == "rollback":
                self._roll_back(trainer, pl_module)

    def _count(self, key: str) -> None:
        name = f"divergence/{key}"
        self.diagnostics[name] = self.diagnostics.get(name, 0) + 1

    # -- rollback --------------------------------------------------------------------------------
    def on_train_start(self, trainer, pl_module):
        if self.policy == "rollback":
            self._keep(pl_module.state_dict(), [optimizer.state_dict() for optimizer in trainer.optimizers])

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        if self.policy == "rollback" and "optimizer_states" in checkpoint:
            self._keep(checkpoint["state_dict"], checkpoint["optimizer_states"])

    def _keep(self, state_dict: dict, optimizer_states: list) -> None:
        """Copies: the state dicts hold the live tensors, which the next steps change."""
        self._good = {"state_dict": {k: v.detach().clone() for k, v in state_dict.items()},
                      "optimizer_states": copy.deepcopy(optimizer_states)}

    def _roll_back(self, trainer, pl_module) -> None:
        rollbacks = self.diagnostics["divergence/rollbacks"]
        if rollbacks > self.patience:
            raise DivergedError(f"the gradients became NaN or infinite again at step {trainer.global_step} after "
                                f"{self.patience} rollbacks with the learning rate scaled by {self.lr_factor} each; "
                                "lower optimizer.lr or check the data range.")
        pl_module.load_state_dict(self._good["state_dict"])
        for optimizer, state in zip(trainer.optimizers, self._good["optimizer_states"], strict=True):
            current = [group["lr"] for group in optimizer.param_groups]  # already scaled by earlier rollbacks
            optimizer.load_state_dict(copy.deepcopy(state))
            for group, lr in zip(optimizer.param_groups, current, strict=True):
                group["lr"] = lr * self.lr_factor
        for config in trainer.lr_scheduler_configs:  # schedulers compute from base_lrs
            config.scheduler.base_lrs = [lr * self.lr_factor for lr in config.scheduler.base_lrs]
        if hasattr(pl_module, "configured_lrs"):  # a staged model restarts its stages from these
            pl_module.configured_lrs = [[lr * self.lr_factor for lr in lrs] for lrs in pl_module.configured_lrs]
        self.diagnostics["divergence/lr_scale"] = self.lr_factor ** rollbacks
