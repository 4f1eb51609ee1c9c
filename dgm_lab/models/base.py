"""What every dgm-lab LightningModule shares: optimizer factories, checkpoint contents, sampling API.

Networks and optimizers arrive ready-made (``_partial_`` factories from the config); the module
only wires them. Checkpoints hold plain containers only (they load with
``torch.load(..., weights_only=True)``): the resolved run config as a dict and the RNG states.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
import pytorch_lightning as pl
import torch

from dgm_lab.errors import ConfigError


class GenerativeModule(pl.LightningModule):
    """Base of all models.

    Args:
        optimizer: factory ``params -> torch.optim.Optimizer`` (``_partial_`` in the config).
        scheduler: optional factory ``optimizer -> LRScheduler``.
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
        self.data_shape = tuple(int(s) for s in data_shape)
        self.num_classes = int(num_classes)
        self.run_config: dict | None = None  # set by the entry point; saved in every checkpoint
        self.diagnostics: dict = {}  # non-scalar results (per-dimension KL...) for summary.json
        self._epoch_sums: dict[str, tuple] = {}

    # -- optimization -------------------------------------------------------------------
    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer),
                                                          "interval": "epoch"}}

    # -- lean per-step logging ------------------------------------------------------------
    def log_train_step(self, metrics: dict[str, torch.Tensor], prog_bar_key: str | None = None) -> None:
        """Log step metrics only on logging steps: ``self.log`` costs about as much as a small
        model's whole step, so calling it every step would double the step time."""
        every = self.trainer.log_every_n_steps if self._trainer is not None else 1
        if (self.global_step + 1) % every and self.global_step:
            return
        for key, value in metrics.items():
            self.log(key, value, on_step=True, on_epoch=False, prog_bar=key == prog_bar_key)

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

    @property
    def training_iterations(self) -> int:
        """Training progress: optimizer steps here; the GAN counts generator iterations instead
        (its global_step counts every optimizer). Sample grids, plots and run timing use it."""
        return self.trainer.global_step

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


def collect_rng_states() -> dict:
    """RNG states of torch (CPU and CUDA), numpy and Python as tensors and plain lists."""
    np_state = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": _to_lists(random.getstate()),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    np_state = states["numpy"]
    np.random.set_state(("MT19937", np_state["key"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    random.setstate(_to_tuples(states["python"]))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _to_lists(value):
    return [_to_lists(v) for v in value] if isinstance(value, tuple | list) else value


def _to_tuples(value):
    return tuple(_to_tuples(v) for v in value) if isinstance(value, list) else value


def require(condition: bool, message: str) -> None:
    """Raise a ConfigError with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(message)
