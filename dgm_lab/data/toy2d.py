"""2-D Gaussian mixtures for the mode-collapse test (VEEGAN protocol, Srivastava et al. 2017).

* ``ring8``: 8 Gaussians evenly spaced on a circle of radius 2, std 0.02.
* ``grid25``: 25 Gaussians on the 5x5 grid {-4, -2, 0, 2, 4}^2, std 0.05.

Points are float32 (N, 2) in data units (not rescaled); the label of a point is the index of the
mode it was drawn from, so a class-conditional model can be asked for one mode. Modes are equally
likely. Every split is drawn once from ``seed`` (independent of the training seed, like the other
datasets' fixed splits); ``mode_centres`` (K, 2) and ``mode_std`` are what the mode-coverage
metric (``dgm_lab.callbacks.ModeCoverage``) scores samples against.
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import DataLoader

from dgm_lab.data.base import DATA_SEED, TensorDataModule
from dgm_lab.errors import ConfigError


def ring_centres(num_modes: int = 8, radius: float = 2.0) -> torch.Tensor:
    """(num_modes, 2) points at angles 2 pi k / num_modes on a circle."""
    angles = torch.arange(num_modes, dtype=torch.float64) * (2 * math.pi / num_modes)
    return (radius * torch.stack([angles.cos(), angles.sin()], dim=1)).float()


def grid_centres(side: int = 5, spacing: float = 2.0) -> torch.Tensor:
    """(side^2, 2) points of a square grid centred on the origin, row-major."""
    axis = (torch.arange(side, dtype=torch.float32) - (side - 1) / 2) * spacing
    ys, xs = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([xs.flatten(), ys.flatten()], dim=1)


def sample_mixture(centres: torch.Tensor, std: float, n: int, generator: torch.Generator):
    """``n`` points from the equal-weight isotropic mixture; returns (points (n, 2), mode index (n,))."""
    modes = torch.randint(len(centres), (n,), generator=generator)
    points = centres[modes] + std * torch.randn(n, 2, generator=generator)
    return points, modes


class Toy2DDataModule(TensorDataModule):
    """Base of the 2-D mixtures; subclasses define ``centres()`` and the default ``std``.

    Args (besides TensorDataModule's batch_size, eval_batch_size, num_workers, train_subset):
        num_train, num_val, num_test: split sizes.
        std: standard deviation of every mode (before ``scale``).
        scale: multiplies the centres and the std: the same mixture in other units. The WGAN-GP
            authors trained their 25-Gaussian grid at 1/2.828 (about unit variance), which suits
            networks at their initial scale; the mode-coverage scores are scale-free (a sample is
            high quality within 3 std of a centre), so a scaled run compares with an unscaled one.
        seed: seed of the draw (the same points for every training seed).
        shuffle: shuffle the training points each epoch (false: fixed order, used by the
            DDP-equivalence test).
    """

    default_std = 0.02
    image_shape = None  # points, not images: data_shape is [2]

    def __init__(self, num_train: int = 50_000, num_val: int = 2_500, num_test: int = 2_500,
                 std: float | None = None, scale: float = 1.0, seed: int = DATA_SEED, shuffle: bool = True,
                 **kwargs):
        if kwargs.get("binarize", "none") != "none":
            raise ConfigError("2-D points cannot be binarized: leave data.binarize=none.")
        super().__init__(**kwargs)
        if min(num_train, num_val, num_test) < 1:
            raise ConfigError("data.num_train, data.num_val and data.num_test must be positive.")
        self.num_train, self.num_val, self.num_test = num_train, num_val, num_test
        std = float(self.default_std if std is None else std)
        if std <= 0:
            raise ConfigError(f"data.std must be positive, got {std}.")
        if not scale > 0:
            raise ConfigError(f"data.scale must be positive, got {scale}.")
        self.mode_std = std * scale
        self.seed, self.shuffle = seed, shuffle
        self.mode_centres = self.centres() * scale
        self.num_classes = len(self.mode_centres)
        scaled = "" if scale == 1 else f" scale={scale}"
        self.fingerprint = f"{self.name} std={std}{scaled} seed={seed} sizes={num_train},{num_val},{num_test}"

    def centres(self) -> torch.Tensor:
        raise NotImplementedError

    @property
    def data_shape(self) -> list[int]:
        return [2]

    def load_splits(self):
        generator = torch.Generator().manual_seed(self.seed)
        sizes = {"train": self.num_train, "val": self.num_val, "test": self.num_test}
        return {split: sample_mixture(self.mode_centres, self.mode_std, n, generator) for split, n in sizes.items()}

    def train_dataloader(self) -> DataLoader:
        self.setup()
        return self._train_loader(shuffle=self.shuffle)


class Ring8DataModule(Toy2DDataModule):
    """8 Gaussians on a circle of radius 2 (std 0.02 by default)."""

    name = "ring8"
    default_std = 0.02

    def centres(self) -> torch.Tensor:
        return ring_centres(8, 2.0)


class Grid25DataModule(Toy2DDataModule):
    """25 Gaussians on the grid {-4, -2, 0, 2, 4}^2 (std 0.05 by default)."""

    name = "grid25"
    default_std = 0.05

    def centres(self) -> torch.Tensor:
        return grid_centres(5, 2.0)
