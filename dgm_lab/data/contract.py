"""What the framework may ask of a datamodule beyond Lightning's own hooks.

Callbacks, metrics and models read data through this contract only, never through a
datamodule's attributes, so any datamodule that implements it (not only ``TensorDataModule``)
gets sample grids, reference statistics, base rates and GAN iteration batches.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class InMemoryImageData(Protocol):
    """A datamodule whose splits are held in memory as image tensors.

    ``name`` identifies the dataset in the protocol stored beside every sample-quality score (e.g.
    ``mnist``, ``fashion_mnist``); ``fingerprint`` identifies its content (the name for a fixed
    dataset, a hash of files and transform for a user's folder) and keys cached reference
    statistics, so two folders that share a name never share statistics; ``class_names`` lists
    the classes in label order (saved in the run's summary).
    """

    name: str
    fingerprint: str
    class_names: list[str]

    def split_images(self, split: str, limit: int | None = None) -> torch.Tensor | None:
        """The first ``limit`` images of ``split`` as the model sees them: float (N, C, H, W) in
        [0, 1] (binarized when the data are), on the CPU; None when there is no such split."""

    def reference_images(self, split: str, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(uint8 images (N, C, H, W) in 0..255, integer labels (N,)) of ``split`` in grey levels,
        never binarized: what generated samples are compared with. Raises ``ConfigError`` naming
        the split when the dataset has none."""

    def set_batches_per_step(self, count: int) -> None:
        """Training batches hold ``batch_size * count`` examples from now on, so a model that
        takes ``count`` micro-batches per optimizer iteration (a GAN's n_critic x accumulate)
        receives them in one Lightning batch. Idempotent: the count replaces the previous one."""


@runtime_checkable
class ModeMixtureData(Protocol):
    """2-D mixture data with known modes (``data=ring8|grid25``): mode-coverage metrics apply."""

    mode_centres: torch.Tensor  # (K, 2)
    mode_std: float


def members(protocol: type) -> list[str]:
    """The names a class must have to implement ``protocol`` (its annotated attributes and its
    methods), for messages that tell a user what to add."""
    methods = (name for name, value in vars(protocol).items() if callable(value) and not name.startswith("_"))
    return sorted({*protocol.__annotations__, *methods})
