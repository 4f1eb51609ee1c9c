"""Labelled subsets of a training split (``data.num_labeled``) and batches that carry labelled draws
(``data.labeled_per_batch``), for models that learn from few labels.

The contract (``dgm_lab.data.contract``): training batches stay ``(x, y)``; ``y == UNLABELED`` marks an
example whose label is hidden; val/test splits keep every label.
"""

from __future__ import annotations

import torch
from torch.utils.data import BatchSampler

from dgm_lab.data.contract import UNLABELED
from dgm_lab.errors import ConfigError, DataError


def check_label_options(num_labeled, label_seed, labeled_per_batch) -> None:
    """ConfigError in one sentence for a value that can never work, whatever the data."""
    if num_labeled is not None and (isinstance(num_labeled, bool) or not isinstance(num_labeled, int)
                                    or num_labeled < 1):
        raise ConfigError(f"data.num_labeled must be a positive whole number of labelled training images (or null "
                          f"for all), got {num_labeled!r}.")
    if isinstance(label_seed, bool) or not isinstance(label_seed, int):
        raise ConfigError(f"data.label_seed must be an integer, got {label_seed!r}.")
    if isinstance(labeled_per_batch, bool) or not isinstance(labeled_per_batch, int) or labeled_per_batch < 0:
        raise ConfigError(f"data.labeled_per_batch must be 0 (off) or a positive number of labelled examples per "
                          f"batch, got {labeled_per_batch!r}.")


def balanced_subset(labels: torch.Tensor, num_labeled: int, num_classes: int, seed: int,
                    dataset: str) -> torch.Tensor:
    """Sorted indices of ``num_labeled`` examples, ``num_labeled / num_classes`` of each class, drawn
    with ``seed`` (class by class, so a class's picks do not depend on the other classes' sizes)."""
    if num_classes < 2:
        raise ConfigError(f"data.num_labeled={num_labeled}: the dataset {dataset} has no classes to label "
                          "(one class only); remove data.num_labeled or give the data labels.")
    if num_labeled > len(labels):
        raise ConfigError(f"data.num_labeled={num_labeled} is more than the {len(labels)} training images of "
                          f"{dataset}; use at most {len(labels)}.")
    if num_labeled % num_classes:
        raise ConfigError(f"data.num_labeled={num_labeled} cannot be split evenly over the {num_classes} classes of "
                          f"{dataset}; use a multiple of {num_classes}, such as "
                          f"{max(num_classes, num_labeled // num_classes * num_classes)}.")
    per_class = num_labeled // num_classes
    generator = torch.Generator().manual_seed(seed)
    picks = []
    for label in range(num_classes):
        members = (labels == label).nonzero().flatten()
        if len(members) < per_class:
            raise DataError(f"data.num_labeled={num_labeled} needs {per_class} training images of class {label} but "
                            f"{dataset} has {len(members)}; use at most {len(members) * num_classes}.")
        picks.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    return torch.cat(picks).sort().values


def hide_labels(labels: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """A copy of ``labels`` with every label outside the indices ``keep`` set to UNLABELED."""
    hidden = torch.full_like(labels, UNLABELED)
    hidden[keep] = labels[keep]
    return hidden


class LabeledDrawBatchSampler(BatchSampler):
    """Batches of ``base`` (indices over the whole training split) with ``per_batch`` indices drawn
    with replacement from ``pool`` appended to each of its ``pieces`` micro-batches.

    A base batch is cut with ``tensor_split(pieces)`` and the draws follow each piece, so a model
    that ``tensor_split``s the Lightning batch into ``pieces`` micro-batches (a GAN's n_critic)
    finds ``per_batch`` labelled rows at the end of every one. The draws come from a generator seeded
    from the global torch RNG (seeded by the run's seed) plus ``rank``, so DDP ranks draw differently.
    """

    def __init__(self, base: BatchSampler, pool: torch.Tensor, per_batch: int, pieces: int, rank: int = 0):
        self.base, self.pool, self.per_batch, self.pieces, self.rank = base, pool, per_batch, pieces, rank

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def __iter__(self):
        seed = int(torch.empty((), dtype=torch.int64).random_().item())
        generator = torch.Generator().manual_seed(seed + self.rank)
        for batch in self.base:
            out = []
            for piece in torch.as_tensor(batch).tensor_split(self.pieces):
                draws = self.pool[torch.randint(len(self.pool), (self.per_batch,), generator=generator)]
                out.extend([*piece.tolist(), *draws.tolist()])
            yield out
