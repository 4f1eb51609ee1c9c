"""MNIST and Fashion-MNIST from IDX files in torchvision's layout: ``<data_dir>/<Name>/raw/``.

Split: the 60k training set is cut into 55,000 train / 5,000 validation images with a fixed
seed; the official 10,000-image test set is the test split.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from dgm_lab.data.base import TensorDataModule, split_tensor
from dgm_lab.errors import DataError

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
VAL_SIZE = 5000


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): big-endian magic, one int32 per dimension, uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except gzip.BadGzipFile:
        raise DataError(f"{path} is not a gzip file although its name ends in .gz (wrong magic bytes); "
                        "replace it with the original download.") from None
    except (EOFError, zlib.error) as error:  # interrupted or corrupt .gz download
        raise DataError(f"{path} is truncated or corrupt ({type(error).__name__}); download it again.") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not a uint8 IDX file; replace it with the original download.")
    ndim = raw[3]
    if not 1 <= ndim <= 4:  # MNIST-style IDX files have 1 (labels) or 3 (images) dimensions
        raise DataError(f"{path} has a wrong IDX magic number (0x{raw[:4].hex()}: {ndim} dimensions); "
                        "replace it with the original download.")
    if len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path} is truncated (its {ndim}-dimension header is incomplete); download it again.")
    dims = np.frombuffer(raw, dtype=">i4", count=ndim, offset=4)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path} is truncated ({data.size} of {int(np.prod(dims))} values); download it again.")
    return data.reshape(tuple(int(d) for d in dims))


def _find(raw_dir: Path, stem: str) -> Path | None:
    for candidate in (raw_dir / stem, raw_dir / f"{stem}.gz"):
        if candidate.exists():
            return candidate
    return None


class IDXDataModule(TensorDataModule):
    """Base for the 28x28 IDX datasets. ``folder`` is torchvision's class name for the dataset."""

    folder = "MNIST"
    image_shape = (1, 28, 28)

    def prepare_data(self) -> None:
        if self._missing():
            self._download()

    def _raw_dir(self) -> Path:
        return Path(self.data_dir or os.environ.get("DGM_DATA_DIR") or "data") / self.folder / "raw"

    def _missing(self) -> list[str]:
        raw_dir = self._raw_dir()
        return [stem for pair in FILES.values() for stem in pair if _find(raw_dir, stem) is None]

    def _download(self) -> None:
        raw_dir = self._raw_dir()
        missing = ", ".join(s + ".gz" for s in self._missing())
        import torchvision

        dataset_class = getattr(torchvision.datasets, self.folder)
        try:
            for train in (True, False):
                dataset_class(str(raw_dir.parent.parent), train=train, download=True)
        except Exception as error:  # offline, proxy, disk full: all end in the same advice
            raise DataError(
                f"{self.folder} files ({missing}) are missing from {raw_dir} and could not be "
                f"downloaded ({type(error).__name__}): copy them there, or set paths.data_dir "
                "(env DGM_DATA_DIR) to a folder that has them."
            ) from None

    def load_splits(self):
        missing = self._missing()
        if missing:
            self._download()
        raw_dir = self._raw_dir()
        out = {}
        for split, (image_stem, label_stem) in FILES.items():
            images = read_idx(_find(raw_dir, image_stem))
            labels = read_idx(_find(raw_dir, label_stem))
            if images.ndim != 3:
                raise DataError(f"{raw_dir / image_stem} does not hold N x H x W images (its shape is {images.shape}); "
                                "replace it with the original download.")
            if len(images) != len(labels):
                raise DataError(f"{raw_dir / image_stem} holds {len(images)} images but {raw_dir / label_stem} holds "
                                f"{len(labels)} labels; one of the two files is from another download: replace both.")
            out[split] = (torch.from_numpy(images.copy()).float().div_(255).unsqueeze(1),
                          torch.from_numpy(labels.astype(np.int64)))
        train_images, train_labels = out.pop("train")
        n_train = len(train_images) - VAL_SIZE
        (out["train"], out["val"]) = split_tensor(train_images, train_labels, [n_train, VAL_SIZE])
        return out


class MNISTDataModule(IDXDataModule):
    name = "mnist"
    folder = "MNIST"


class FashionMNISTDataModule(IDXDataModule):
    name = "fashion_mnist"
    folder = "FashionMNIST"
