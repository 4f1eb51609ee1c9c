"""``data=cifar10``: the original CIFAR-10 in torchvision's layout, ``<data_dir>/cifar-10-batches-py/``.

The folder holds the dataset's own pickles: ``data_batch_1`` .. ``data_batch_5`` (10,000 training
images each), ``test_batch`` (10,000) and ``batches.meta`` (class names), each a dict whose
``data`` is uint8 (N, 3072) (1024 red, then green, then blue values of a row-major 32x32 image)
and ``labels`` a list of N ints in 0..9. Split: 45,000 train / 5,000 validation (fixed seed) /
the 10,000 test images.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import torch

from dgm_lab.data.base import TensorDataModule
from dgm_lab.data.splits import check_size, cut, held_out_sizes, uint8_to_float
from dgm_lab.errors import DataError

FOLDER = "cifar-10-batches-py"
ARCHIVE = "cifar-10-python.tar.gz"
HOME_PAGE = "https://www.cs.toronto.edu/~kriz/cifar.html"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """What ``_codecs.encode`` does in a Python 3 protocol-2 pickle of bytes, for latin-1 only."""
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"it encodes bytes as {encoding}, which a CIFAR-10 batch never does")
    return text.encode("latin1")


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles only what a CIFAR batch holds (dicts, lists, bytes, numbers and numpy arrays):
    any other global is refused, so a foreign pickle cannot run code while it is read."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): lambda: np.zeros(0).__reduce__()[0],  # Python 2 numpy's name
        ("numpy._core.multiarray", "_reconstruct"): lambda: np.zeros(0).__reduce__()[0],  # numpy >= 2
        ("numpy", "ndarray"): lambda: np.ndarray,
        ("numpy", "dtype"): lambda: np.dtype,
        ("_codecs", "encode"): lambda: _latin1_bytes,  # bytes in a batch re-pickled by Python 3
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, which a CIFAR-10 batch never does")
        return self.ALLOWED[module, name]()


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images (N, 3, 32, 32), int64 labels (N,)) of one CIFAR-10 batch file."""
    try:
        with open(path, "rb") as f:
            entry = _BatchUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise DataError(f"{path} is not a CIFAR-10 batch ({type(error).__name__}: {error}); it is truncated or "
                        f"foreign: replace it with the file from {ARCHIVE} ({HOME_PAGE}).") from None
    data = entry.get(b"data") if isinstance(entry, dict) else None
    labels = entry.get(b"labels") if isinstance(entry, dict) else None
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3072
            and isinstance(labels, list) and len(labels) == len(data)):
        raise DataError(f"{path} does not hold CIFAR-10's b'data' (uint8 N x 3072) and b'labels' (N ints); "
                        f"replace it with the file from {ARCHIVE} ({HOME_PAGE}).")
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu" or (len(labels) and (labels.min() < 0 or labels.max() > 9)):
        raise DataError(f"{path} has labels outside 0..9; replace it with the file from {ARCHIVE} ({HOME_PAGE}).")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def read_class_names(path: Path) -> list[str]:
    """The ``label_names`` of ``batches.meta``; the well-known ten names when it is absent or odd."""
    if not path.exists():
        return list(CLASS_NAMES)
    try:
        with open(path, "rb") as f:
            names = _BatchUnpickler(f, encoding="bytes").load().get(b"label_names")
        decoded = [name.decode() for name in names]
    except Exception:  # the class names are cosmetic: never fail a run on them
        return list(CLASS_NAMES)
    return decoded if len(decoded) == 10 else list(CLASS_NAMES)


class CIFAR10DataModule(TensorDataModule):
    """CIFAR-10, 3x32x32 RGB float in [0, 1], labels 0..9 (``class_names`` in label order)."""

    name = "cifar10"
    num_classes = 10
    image_shape = (3, 32, 32)

    def __init__(self, val_size: float | int = 5000, **kwargs):
        super().__init__(**kwargs)
        check_size(val_size, "data.val_size")
        self.val_size = val_size
        self.class_names = list(CLASS_NAMES)

    @property
    def folder(self) -> Path:
        return Path(self.data_dir or os.environ.get("DGM_DATA_DIR") or "data").expanduser() / FOLDER

    def _missing(self) -> list[str]:
        return [name for name in (*TRAIN_FILES, TEST_FILE) if not (self.folder / name).is_file()]

    def prepare_data(self) -> None:
        if self._missing():
            self._download()

    def _download(self) -> None:
        """torchvision extracts an archive already in ``data_dir`` and otherwise downloads it."""
        import torchvision

        missing = ", ".join(self._missing())
        try:
            torchvision.datasets.CIFAR10(str(self.folder.parent), train=True, download=True)
        except Exception as error:  # offline, proxy, disk full, bad archive: all end in the same advice
            raise DataError(
                f"CIFAR-10 files ({missing}) are missing from {self.folder} and could not be downloaded "
                f"({type(error).__name__}): put {ARCHIVE} from {HOME_PAGE} in {self.folder.parent}, or its "
                f"extracted {FOLDER}/ folder, or set paths.data_dir (env DGM_DATA_DIR) to a folder that has them."
            ) from None

    def load_splits(self):
        if self._missing():
            self._download()
        self.class_names = read_class_names(self.folder / META_FILE)
        batches = [read_batch(self.folder / name) for name in TRAIN_FILES]
        images = np.concatenate([b[0] for b in batches])
        labels = np.concatenate([b[1] for b in batches])
        del batches
        sizes = held_out_sizes(len(images), {"data.val_size": self.val_size}, str(self.folder))
        out = cut(images, labels, ["train", "val"], sizes)
        test_images, test_labels = read_batch(self.folder / TEST_FILE)
        out["test"] = (uint8_to_float(test_images), torch.from_numpy(test_labels))
        return out
