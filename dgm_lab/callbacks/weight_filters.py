"""First-layer weight filters as a PNG grid in ``<run>/samples/`` (and W&B when attached), for
models that have them (``dgm_lab.models.contract.HasWeightFilters``: RBM, DBN, DBM); inert for
every other model. ``callbacks.weight_filters.every_n_epochs`` sets the interval (0: off).
"""

from __future__ import annotations

import math

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_only

from dgm_lab.callbacks.media import log_images
from dgm_lab.grids import save_grid, when
from dgm_lab.models.contract import HasWeightFilters
from dgm_lab.run_folder import RunFolder


class WeightFilters(pl.Callback):
    """Every ``every_n_epochs`` training epochs (0: never), write the first ``num_filters`` hidden
    units' incoming weights as images (``pl_module.weight_filters()``: (H, C, h, w) in [0, 1])."""

    def __init__(self, every_n_epochs: int = 1, num_filters: int = 100):
        self.every_n_epochs = int(every_n_epochs)
        self.num_filters = int(num_filters)
        self.written: list[str] = []

    def applies_to(self, model, datamodule) -> bool:
        """Attached only to models with weight filters (``builders.build_callbacks``)."""
        return isinstance(model, HasWeightFilters)

    def on_validation_epoch_end(self, trainer, pl_module):
        # Only while fitting: dgm-eval's validate has no run folder to write into.
        if (self.every_n_epochs <= 0 or not isinstance(pl_module, HasWeightFilters) or trainer.sanity_checking
                or trainer.state.fn != "fit" or (trainer.current_epoch + 1) % self.every_n_epochs):
            return
        self.write(trainer, pl_module, tag=f"epoch{trainer.current_epoch + 1:04d}")

    @rank_zero_only
    def write(self, trainer, pl_module, tag: str) -> None:
        folder = RunFolder(trainer.default_root_dir).samples
        folder.mkdir(parents=True, exist_ok=True)
        filters = pl_module.weight_filters()[: self.num_filters]
        path = folder / f"filters_{tag}.png"
        save_grid(filters, path, nrow=max(1, int(math.sqrt(len(filters)))),
                  caption=f"{when(tag)}: incoming weights of {len(filters)} hidden units")
        self.written.append(str(path))
        log_images(trainer, "samples/filters", [path])
