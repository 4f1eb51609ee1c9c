"""Split sizes given as a fraction or a count, and uint8 image arrays cut into float splits.

Sizes follow scikit-learn's ``train_test_split`` convention: a float in (0, 1) is a fraction of
the images, an integer >= 1 is a number of images. Every cut uses ``split_tensor`` (DATA_SEED),
so the split never depends on the training seed.
"""

from __future__ import annotations

import numpy as np
import torch

from dgm_lab.data.base import split_tensor
from dgm_lab.errors import ConfigError, DataError


def check_size(value, key: str) -> None:
    """Raise ConfigError unless ``value`` is a fraction in (0, 1) or a positive integer."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{key} must be a fraction in (0, 1) or a number of images, got {value!r}.")
    if isinstance(value, float) and not 0 < value < 1:
        raise ConfigError(f"{key}={value} must be a fraction strictly between 0 and 1, or a whole number of images.")
    if isinstance(value, int) and value < 1:
        raise ConfigError(f"{key} must be at least 1 image, got {value}.")


def count(value: float | int, total: int) -> int:
    """A fraction of ``total`` (at least one image) or the count itself."""
    return max(1, round(value * total)) if isinstance(value, float) else int(value)


def held_out_sizes(total: int, sizes: dict[str, float | int], source: str) -> list[int]:
    """[train, *held-out] image counts for ``total`` images; DataError when train would be empty."""
    held = [count(value, total) for value in sizes.values()]
    if sum(held) >= total:
        asked = ", ".join(f"{key}={value}" for key, value in sizes.items())
        raise DataError(f"{source} has {total} images, too few to hold out {asked} ({sum(held)} images) and still "
                        "train on at least one; add images or lower those sizes.")
    return [total - sum(held), *held]


def uint8_to_float(images: np.ndarray | torch.Tensor, index: torch.Tensor | None = None,
                   chunk: int = 4096) -> torch.Tensor:
    """uint8 (N, C, H, W) (the rows ``index`` of it, in that order) -> float32 in [0, 1].

    Rows are gathered and cast a chunk at a time into the float output, so besides the source and
    the result only one chunk is ever alive (60k 32x32 RGB images: 184 MB uint8, 737 MB float)."""
    source = torch.as_tensor(images)
    index = torch.arange(len(source)) if index is None else index
    out = torch.empty((len(index), *source.shape[1:]), dtype=torch.float32)
    for start in range(0, len(index), chunk):
        out[start : start + chunk] = source[index[start : start + chunk]]
    return out.div_(255)


def cut(images: np.ndarray, labels: np.ndarray, names: list[str], sizes: list[int],
        subset: np.ndarray | None = None) -> dict:
    """``{name: (float images, int64 labels)}``: the rows ``subset`` (default: all) of uint8
    (N, C, H, W) images shuffled with DATA_SEED and cut into pieces of ``sizes``."""
    subset = torch.arange(len(images)) if subset is None else torch.as_tensor(subset, dtype=torch.long)
    labels = torch.as_tensor(labels, dtype=torch.long)
    pieces = split_tensor(subset, labels[subset], sizes)  # the shuffle of every other datamodule, on indices
    return {name: (uint8_to_float(images, index), piece_labels)
            for name, (index, piece_labels) in zip(names, pieces, strict=True)}
