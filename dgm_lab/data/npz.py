"""``data=npz``: images from an ``.npz`` file, such as the one ``dgm-sample`` writes.

    dgm-train data=npz data.path=outputs/vae/<run>/samples/sample-n1000-seed0.npz

The file holds ``images``: uint8 (N, H, W) or (N, H, W, C) in 0..255 and, optionally, ``labels``:
(N,) integers >= 0 (without them every image is in one class). It is read with
``allow_pickle=False``: an ``.npz`` never runs code. Split: train/val/test drawn with the fixed
DATA_SEED, or train/val from ``path`` and the test split from ``test_path``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from dgm_lab.data.base import TensorDataModule
from dgm_lab.data.splits import check_size, cut, held_out_sizes, uint8_to_float
from dgm_lab.errors import ConfigError, DataError

DEFAULT_TEST_SIZE = 0.1
WRITE_IT = "np.savez(path, images=uint8 (N, H, W[, C]), labels=(N,) ints)"


def read_npz(path: Path, key: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(uint8 images (N, C, H, W), int64 labels (N,) or None) of one file; DataError in one sentence
    for anything else. ``key`` is the config key that named the file."""
    if not path.is_file():
        raise DataError(f"{key} {path} does not exist; point it at an .npz file with an 'images' array "
                        "(what dgm-sample writes).")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise DataError(f"{path} is a single .npy array, not an .npz file; write it with {WRITE_IT}.")
        with loaded:
            names = loaded.files
            arrays = {name: loaded[name] for name in names if name in ("images", "labels")}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(f"{path} could not be read as an .npz file ({type(error).__name__}: {error}); "
                        f"write it with {WRITE_IT}.") from None
    images = arrays.get("images")
    if images is None:
        raise DataError(f"{path} has no 'images' array (it has: {', '.join(names) or 'nothing'}); write it with "
                        f"{WRITE_IT}.")
    if images.dtype != np.uint8:
        raise DataError(f"{path}: 'images' are {images.dtype}, not uint8; store grey levels 0..255 as uint8 "
                        "(for floats in [0, 1]: (x * 255).round().astype(np.uint8)).")
    if images.ndim not in (3, 4) or len(images) == 0 or 0 in images.shape:
        raise DataError(f"{path}: 'images' has shape {images.shape}; it must be (N, H, W) or (N, H, W, C) with "
                        "at least one image.")
    images = images[..., None] if images.ndim == 3 else images
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2)), _labels(path, arrays.get("labels"), len(images))


def _labels(path: Path, labels: np.ndarray | None, count: int) -> np.ndarray | None:
    if labels is None:
        return None
    if labels.ndim != 1 or len(labels) != count:
        raise DataError(f"{path}: 'labels' has shape {labels.shape} but there are {count} images; it must be "
                        f"({count},), one class index per image.")
    if labels.dtype.kind not in "iu":
        raise DataError(f"{path}: 'labels' are {labels.dtype}; they must be integer class indices.")
    if len(labels) and labels.min() < 0:
        raise DataError(f"{path}: 'labels' has negative values; class indices start at 0.")
    return labels.astype(np.int64)


class NPZDataModule(TensorDataModule):
    """Images float in [0, 1] (N, C, H, W) and int64 labels from ``path`` (and ``test_path``).

    ``num_classes`` is one more than the largest label (1 without labels); ``class_names`` are the
    label indices as strings."""

    name = "npz"

    def __init__(self, path: str, test_path: str | None = None, val_size: float | int = 0.1,
                 test_size: float | int | None = None, name: str | None = None, **kwargs):
        super().__init__(**kwargs)
        check_size(val_size, "data.val_size")
        if test_size is not None:
            check_size(test_size, "data.test_size")
            if test_path:
                raise ConfigError(f"data.test_path gives the test split; remove data.test_size={test_size}.")
        if name:
            self.name = name
        self.path = Path(path).expanduser().resolve()
        self.test_path = Path(test_path).expanduser().resolve() if test_path else None
        self.val_size, self.test_size = val_size, test_size
        # Read now: the model's data_shape and num_classes are filled from the file before setup().
        self._arrays = [read_npz(self.path, "data.path")]
        if self.test_path:
            self._arrays.append(read_npz(self.test_path, "data.test_path"))
            self._check_test_matches()
        self.image_shape = tuple(int(n) for n in self._arrays[0][0].shape[1:])
        labels = [lab for _, lab in self._arrays if lab is not None]
        self.num_classes = max(int(lab.max()) for lab in labels) + 1 if labels else 1
        # The files' identity: another .npz under the same name must not reuse cached statistics.
        files = [f for f in (self.path, self.test_path) if f is not None]
        self.fingerprint = "npz " + " ".join(f"{f}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)

    def _check_test_matches(self) -> None:
        (train, train_labels), (test, test_labels) = self._arrays
        if train.shape[1:] != test.shape[1:]:
            raise DataError(f"data.test_path {self.test_path} holds (C, H, W) = {test.shape[1:]} images but data.path "
                            f"{self.path} holds {train.shape[1:]}; both files need images of one shape.")
        if (train_labels is None) != (test_labels is None):
            with_labels = self.path if train_labels is not None else self.test_path
            raise DataError(f"only {with_labels} has 'labels'; give both data.path and data.test_path labels, or neither.")

    def load_splits(self):
        arrays, self._arrays = self._arrays, []  # the float splits replace the uint8 arrays
        (images, labels), *test = arrays
        labels = np.zeros(len(images), np.int64) if labels is None else labels
        if not test:
            sizes = held_out_sizes(len(images), {"data.val_size": self.val_size,
                                                 "data.test_size": self.test_size or DEFAULT_TEST_SIZE}, str(self.path))
            return cut(images, labels, ["train", "val", "test"], sizes)
        sizes = held_out_sizes(len(images), {"data.val_size": self.val_size}, str(self.path))
        out = cut(images, labels, ["train", "val"], sizes)
        test_images, test_labels = test[0]
        test_labels = np.zeros(len(test_images), np.int64) if test_labels is None else test_labels
        out["test"] = (uint8_to_float(test_images), torch.from_numpy(test_labels))
        return out
