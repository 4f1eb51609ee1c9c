"""Labelled synthetic datasets written by ``dgm-sample export=npz|image_folder``, in the formats
``data=npz`` and ``data=image_folder`` read, and read back as (images, labels) for the
train-on-synthetic score (``dgm-eval images=<export> data=<real> metrics=cas``).

* ``npz``: ``images`` uint8 (N, H, W, C), ``labels`` int64 (N,) (unconditional models: no labels).
* ``image_folder``: ``<out>/<class name>/NNNNN.png`` (lossless), class folders named so that their
  sorted order is the label order (``data=image_folder`` labels folders in sorted name order).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dgm_lab.errors import ConfigError, DataError

EXPORTS = ("npz", "image_folder")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def folder_names(class_names: list[str]) -> list[str]:
    """Folder names whose sorted order is the label order: the class names when they already sort
    so (and are usable as folder names), else ``<zero-padded index>_<name>``."""
    usable = all(name and "/" not in name and not name.startswith(".") for name in class_names)
    if usable and sorted(class_names) == list(class_names) and len(set(class_names)) == len(class_names):
        return list(class_names)
    width = len(str(len(class_names) - 1))
    return [f"{index:0{width}d}_{name}".replace("/", "_") for index, name in enumerate(class_names)]


def write_npz(path: Path, images: np.ndarray, labels: np.ndarray | None) -> Path:
    """uint8 (N, H, W, C) images [and labels] to ``path`` (compressed, no pickles)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"images": images, **({"labels": labels.astype(np.int64)} if labels is not None else {})}
    np.savez_compressed(path, **arrays)
    return path


def write_image_folder(root: Path, images: np.ndarray, labels: np.ndarray, class_names: list[str]) -> Path:
    """uint8 (N, H, W, C) images as ``root/<class>/NNNNN.png``; refuses a folder that already has files
    (mixing two exports would silently mix their classes)."""
    from PIL import Image

    if root.exists() and any(root.iterdir()):
        raise ConfigError(f"output={root} already holds files; pass an empty or new folder for export=image_folder.")
    names = folder_names(class_names)
    width = max(5, len(str(len(images) - 1)))
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / names[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        pixels = image[..., 0] if image.shape[-1] == 1 else image
        Image.fromarray(pixels, mode="L" if pixels.ndim == 2 else "RGB").save(folder / f"{index:0{width}d}.png")
    return root


def read_labelled(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 images (N, C, H, W), int64 labels (N,)) of an export: an ``.npz`` with ``labels``, or a
    folder of class sub-folders (labels in sorted folder order)."""
    path = Path(path).expanduser().resolve()
    if path.is_dir():
        return _read_folder(path)
    from dgm_lab.data.npz import read_npz

    images, labels = read_npz(path, "images=")
    if labels is None:
        raise DataError(f"{path} has no 'labels'; the train-on-synthetic score needs a labelled export "
                        "(dgm-sample of a class-conditional model writes one).")
    return torch.from_numpy(images), torch.from_numpy(labels)


def _read_folder(root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    from PIL import Image

    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{root} has no class sub-folders; the train-on-synthetic score needs a labelled export "
                        "(dgm-sample export=image_folder writes <out>/<class>/NNNNN.png).")
    arrays, labels = [], []
    for label, folder in enumerate(classes):
        for file in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            with Image.open(file) as image:
                array = np.asarray(image.convert("L" if image.mode in ("1", "L", "I", "I;16") else "RGB"))
            arrays.append(array[..., None] if array.ndim == 2 else array)
            labels.append(label)
    if not arrays or len({a.shape for a in arrays}) > 1:
        raise DataError(f"{root}: the class folders must hold images of one size and channel count.")
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return images, torch.tensor(labels, dtype=torch.long)


def class_grid(images: torch.Tensor, labels: torch.Tensor, columns: int) -> tuple[torch.Tensor, int]:
    """(images for a grid with one row per class present, in class order, and up to ``columns``
    samples each, blank-padded; the row length)."""
    classes = labels.unique(sorted=True)
    columns = max(1, min(columns, max(int((labels == c).sum()) for c in classes)))
    rows = []
    for label in classes:
        row = images[labels == label][:columns]
        pad = images.new_zeros((columns - len(row), *images.shape[1:]))
        rows.append(torch.cat([row, pad]))
    return torch.cat(rows), columns
