"""What the framework may ask of a datamodule beyond Lightning's own hooks.

Callbacks, metrics and models read data through this contract only, never through a
datamodule's attributes, so any datamodule that implements it (not only ``TensorDataModule``)
gets sample grids, reference statistics, base rates and GAN iteration batches.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

UNLABELED = -1
"""The label of a training example whose label is hidden (``data.num_labeled``). Training batches
stay ``(x, y)``; rows with ``y == UNLABELED`` are unlabelled. Validation and test labels are never
hidden. Models that do not use labels ignore ``y``; class-conditional models that need a label for
every example refuse partly labelled data (see ``PartlyLabeled``)."""


def labeled_mask(labels: torch.Tensor) -> torch.Tensor:
    """Boolean (N,): True where the label is known (``labels != UNLABELED``)."""
    return labels != UNLABELED


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
class PartlyLabeled(Protocol):
    """A datamodule that can hide training labels (``data.num_labeled``) and add labelled draws to
    every training batch (``data.labeled_per_batch``).

    ``num_labeled``: None when every training label is kept, else the number kept, balanced over the
    classes and chosen with ``data.label_seed`` (the training seed never changes the subset).
    ``labeled_per_batch``: 0, or M: each training micro-batch (``batch_size`` rows of the whole
    split, labels kept where known) is followed by M rows drawn with replacement from the labelled
    examples, so a model always sees M labelled rows; with ``set_batches_per_step(k)`` a Lightning
    batch holds k such micro-batches, each ``batch_size + M`` rows, in order (``tensor_split(k)``
    recovers them). ``labeled_mask(y)`` finds the labelled rows either way.
    """

    num_labeled: int | None
    labeled_per_batch: int

    def labeled_indices(self) -> torch.Tensor:
        """Indices into the training split of the examples whose labels are kept (all of them when
        ``num_labeled`` is None)."""

    def label_record(self) -> dict:
        """What summary.json records of the labelled subset: num_labeled, label_seed,
        labeled_per_batch and the number kept per class."""


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
