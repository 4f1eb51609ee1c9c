"""What every dgm-lab LightningModule shares: optimizers and schedulers built from the config's
factories, scheduler stepping under manual optimization, step-log gating, epoch means, the
sampling API and the checkpoint contents.

Networks and optimizers arrive ready-made (``_partial_`` factories from the config); the module
only wires them. Checkpoints hold plain containers only (they load with
``torch.load(..., weights_only=True)``): the resolved run config as a dict and the RNG states.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import pytorch_lightning as pl
import torch

from dgm_lab.errors import ConfigError
from dgm_lab.models.rng_states import collect_rng_states, restore_rng_states


class GenerativeModule(pl.LightningModule):
    """Base of all models.

    Args:
        optimizer: factory ``params -> torch.optim.Optimizer`` (``_partial_`` in the config).
        scheduler: optional factory ``optimizer -> LRScheduler``, stepped once per epoch.
        data_shape: (C, H, W) of one example, filled in from the datamodule.
        num_classes: number of labels in the dataset, filled in from the datamodule.
    """

    # (metric, "max" | "min") that selects the best checkpoint unless the config names one.
    default_monitor: tuple[str, str] = ("val/loss", "min")
    # True when ``sample`` honours ``labels`` (see dgm_lab.models.contract.GenerativeModel).
    conditional: bool = False

    def __init__(self, optimizer: Callable, scheduler: Callable | None = None,
                 data_shape: list[int] = (1, 28, 28), num_classes: int = 10):
        super().__init__()
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        # Per-optimizer settings ({"lr": ..., "betas": ...}) that replace the factory's, keyed like
        # ``optimized_parameters``; None values keep the factory's (the GAN's TTUR settings).
        self.optimizer_overrides: dict[str, dict] = {}
        self.data_shape = tuple(int(s) for s in data_shape)
        self.num_classes = int(num_classes)
        self.run_config: dict | None = None  # set by the entry point; saved in every checkpoint
        self.diagnostics: dict = {}  # non-scalar results (per-dimension KL...) for summary.json
        self._epoch_sums: dict[str, tuple] = {}
        self.validation_seconds = 0.0  # wall time inside validation loops (grids, checkpoints too): not training
        self._validation_started: float | None = None

    # -- optimizers and schedulers ---------------------------------------------------------
    def optimized_parameters(self) -> dict[str, Iterable]:
        """One optimizer per entry, in this order: the config key of its overrides (``model.<key>``)
        -> its parameters or parameter groups. One optimizer over everything unless a model says
        otherwise (the GAN: generator and discriminator)."""
        return {"optimizer": list(self.parameters())}

    def build_optimizer(self, key: str, parameters: Iterable) -> torch.optim.Optimizer:
        settings = {k: v for k, v in self.optimizer_overrides.get(key, {}).items() if v is not None}
        if not settings:
            return self.optimizer_factory(parameters)
        try:
            return self.optimizer_factory(parameters, **settings)
        except TypeError as error:
            raise ConfigError(f"model.{key} sets {sorted(settings)}, which this optimizer does not take "
                              f"({error}); set them to null.") from error

    def configure_optimizers(self):
        optimizers = [self.build_optimizer(key, params) for key, params in self.optimized_parameters().items()]
        # The LRs as configured, before any schedule: a stage restart (stages.py) starts from them.
        self.configured_lrs = [[group["lr"] for group in optimizer.param_groups] for optimizer in optimizers]
        if self.scheduler_factory is None:
            return optimizers[0] if len(optimizers) == 1 else optimizers
        configs = [{"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer),
                                                             "interval": "epoch"}} for optimizer in optimizers]
        return configs[0] if len(configs) == 1 else configs

    def schedulers(self) -> list:
        """The LR schedulers Lightning holds, as a list (``lr_schedulers()`` gives None, one or a list)."""
        found = self.lr_schedulers()
        return [] if found is None else found if isinstance(found, list) else [found]

    def epochs_into_schedule(self) -> int:
        """Epochs since the LR schedules started: the current epoch (a staged model restarts them)."""
        return self.current_epoch

    def on_train_epoch_start(self) -> None:
        """Under manual optimization Lightning does not step the schedulers: they step here, at the
        start of an epoch, until they reach ``epochs_into_schedule()``. Catching up at epoch start
        (rather than stepping at epoch end, after or before a checkpoint was written) puts a run
        resumed from any checkpoint on the schedule of a straight run."""
        if self.automatic_optimization:
            return
        target = self.epochs_into_schedule()
        for scheduler in self.schedulers():
            while scheduler.last_epoch < target:
                scheduler.step()

    # -- lean per-step logging ------------------------------------------------------------
    @property
    def training_iterations(self) -> int:
        """Training progress: optimizer steps here; the GAN counts generator iterations instead
        (its global_step counts every optimizer). Sample grids, plots, step logs and run timing use it."""
        return self.global_step

    def is_logging_step(self) -> bool:
        """True on the iterations whose step metrics Lightning writes: the first and every
        ``trainer.log_every_n_steps``-th, counted from 1 on ``training_iterations``. A manual step
        calls it after its optimizer steps (the count includes the iteration in progress); under
        automatic optimization Lightning steps after ``training_step`` returns, hence the + 1."""
        every = self.trainer.log_every_n_steps if self._trainer is not None else 1
        if not every:
            return False
        iteration = self.training_iterations + (1 if self.automatic_optimization else 0)
        return iteration == 1 or iteration % every == 0

    def log_train_step(self, metrics: dict[str, torch.Tensor], prog_bar_key: str | None = None) -> None:
        """Log step metrics on logging steps only: ``self.log`` costs about as much as a small
        model's whole step. Averaged over ranks, so a DDP run logs the global-batch values."""
        if not self.is_logging_step():
            return
        synced = self._trainer is not None and self.trainer.world_size > 1
        for key, value in metrics.items():
            self.log(key, value, on_step=True, on_epoch=False, prog_bar=key == prog_bar_key, sync_dist=synced)

    def accumulate_epoch_mean(self, key: str, value: torch.Tensor) -> None:
        """Add a batch mean to an epoch mean kept as tensors (no sync); logged at epoch end."""
        total, count = self._epoch_sums.get(key, (0.0, 0))
        self._epoch_sums[key] = (total + value.detach(), count + 1)

    def on_train_epoch_end(self) -> None:
        for key, (total, count) in self._epoch_sums.items():
            self.log(key, total / count, on_step=False, on_epoch=True, sync_dist=True)
        self._epoch_sums = {}

    # -- sampling API used by callbacks and dgm-sample -----------------------------------
    def sample(self, num_samples: int, generator: torch.Generator | None = None,
               labels: torch.Tensor | None = None) -> torch.Tensor:
        """Return ``num_samples`` images (N, C, H, W) in [0, 1]."""
        raise NotImplementedError(f"{type(self).__name__} does not implement sample()")

    def on_validation_start(self) -> None:
        self._validation_started = time.perf_counter()

    def on_validation_end(self) -> None:
        # called after every callback's validation hooks: sample grids and checkpoint saving included
        if self._validation_started is not None:
            self.validation_seconds += time.perf_counter() - self._validation_started
            self._validation_started = None

    def on_train_start(self) -> None:
        # after a resume has restored the counters: the run summary times only this fit's iterations
        self.iterations_at_fit_start = self.training_iterations

    # -- checkpoint contents -------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.run_config is not None:
            checkpoint["dgm_config"] = self.run_config
        checkpoint["rng_states"] = collect_rng_states()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "rng_states" in checkpoint:
            restore_rng_states(checkpoint["rng_states"])


def decay_weights_only(named_parameters: Iterable[tuple[str, torch.nn.Parameter]]) -> list[dict]:
    """Parameter groups that leave the optimizer's weight decay on the weights and take it off
    every other parameter (biases), as Hinton's practical guide for RBMs does."""
    named = list(named_parameters)
    return [{"params": [p for name, p in named if name.endswith("weight")]},
            {"params": [p for name, p in named if not name.endswith("weight")], "weight_decay": 0.0}]
