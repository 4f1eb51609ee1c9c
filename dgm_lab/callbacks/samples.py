"""PNG grids of samples, reconstructions and latent interpolations, saved to ``<run>/samples/``
and, when a W&B logger is attached, logged there too."""

from __future__ import annotations

import math
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_only

from dgm_lab.callbacks.media import log_images
from dgm_lab.data.contract import InMemoryImageData
from dgm_lab.grids import save_grid, when
from dgm_lab.models.contract import Interpolates, Reconstructs
from dgm_lab.run_folder import RunFolder


class ImageSamples(pl.Callback):
    """Every ``every_n_epochs`` validation epochs, write grids from fixed noise and fixed images.

    Uses its own seeded generator so that drawing samples never perturbs the training RNG
    (resume equivalence depends on that).
    """

    def __init__(self, every_n_epochs: int = 1, num_samples: int = 64, seed: int = 0,
                 interpolation_steps: int = 10, folder: str | None = None, every_n_steps: int = 0):
        self.every_n_epochs = max(1, int(every_n_epochs))
        self.every_n_steps = int(every_n_steps)  # also every N training steps (generator iterations for GANs); 0: off
        self.num_samples = int(num_samples)
        self.seed = seed
        self.interpolation_steps = interpolation_steps
        self.folder = folder
        self.written: list[str] = []

    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs or not _images(pl_module):
            return
        self.write(trainer, pl_module, tag=f"epoch{trainer.current_epoch + 1:04d}")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = pl_module.training_iterations  # GANs: generator iterations
        if self.every_n_steps and step % self.every_n_steps == 0 and _images(pl_module):
            self.write(trainer, pl_module, tag=f"step{step:07d}")

    @rank_zero_only
    def write(self, trainer, pl_module, tag: str) -> None:
        folder = Path(self.folder or RunFolder(trainer.default_root_dir).samples)
        folder.mkdir(parents=True, exist_ok=True)
        was_training = pl_module.training
        pl_module.eval()
        labels, sample_rows = class_rows(pl_module, self.num_samples)
        grids = {"samples": pl_module.sample(len(labels) if labels is not None else self.num_samples,
                                             generator=torch.Generator().manual_seed(self.seed), labels=labels)}
        images, image_labels = self._fixed_images(trainer, pl_module)
        conditional = pl_module.conditional  # reconstructions need the image's class; interpolations would mix two
        if images is not None and isinstance(pl_module, Reconstructs):
            reconstructed = pl_module.reconstruct(images, image_labels) if conditional else pl_module.reconstruct(images)
            grids["reconstructions"] = torch.cat([images, reconstructed])
        if images is not None and isinstance(pl_module, Interpolates) and len(images) >= 2 and not conditional:
            pairs = min(8, len(images) // 2)
            grids["interpolations"] = pl_module.interpolate(images[:pairs], images[pairs : 2 * pairs],
                                                            self.interpolation_steps)
        pl_module.train(was_training)
        for kind, grid in grids.items():
            nrow = {"interpolations": self.interpolation_steps, "samples": sample_rows}.get(
                kind, int(math.sqrt(self.num_samples)) or 8)
            path = folder / f"{kind}_{tag}.png"
            save_grid(grid, path, nrow=nrow, caption=self._caption(kind, tag, len(grid), nrow))
            self.written.append(str(path))
            log_images(trainer, f"samples/{kind}", [path])

    @staticmethod
    def _caption(kind: str, tag: str, count: int, nrow: int) -> str:
        """What the rows of a grid are (``tag``: epoch0003 / step0000100)."""
        at = when(tag)
        if kind == "reconstructions":
            half = math.ceil(count / 2 / nrow)
            return f"{at}: rows 1-{half} validation images, rows {half + 1}-{2 * half} their reconstructions"
        if kind == "interpolations":
            return f"{at}: each row decodes a straight line in latent space between two validation images"
        return f"{at}: {count} samples from fixed noise"

    def _fixed_images(self, trainer, pl_module):
        """The first validation images and their labels (reconstruction and interpolation grids), or
        (None, None) when the data cannot give them."""
        datamodule = trainer.datamodule
        if not isinstance(datamodule, InMemoryImageData):
            return None, None
        count = self.num_samples // 2
        images = datamodule.split_images("val", count)
        if images is None:
            return None, None
        labels = datamodule.reference_images("val", count)[1] if pl_module.conditional else None
        return images.to(pl_module.device), None if labels is None else labels.to(pl_module.device)


def class_rows(model, num_samples: int) -> tuple[torch.Tensor | None, int]:
    """(labels, images per grid row): a class-conditional model's grid has one row per class
    (``num_samples // K`` of each, at least one); others get None and a square grid."""
    if not model.conditional:
        return None, int(math.sqrt(num_samples)) or 8
    per_class = max(1, num_samples // model.num_classes)
    return torch.arange(model.num_classes).repeat_interleave(per_class), per_class


def _images(pl_module) -> bool:
    """Grids need (C, H, W) data; 2-D points (data=ring8, grid25) are plotted by ModeCoverage."""
    return len(pl_module.data_shape) == 3
