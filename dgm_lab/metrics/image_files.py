"""Saved samples for ``dgm-eval images=...``: a folder of PNG/JPEG files or an ``.npz``."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from dgm_lab.errors import DataError


def load_image_files(path: str | Path) -> torch.Tensor:
    """uint8 images (N, C, H, W) from a folder of PNG/JPEG files or an ``.npz`` whose ``images`` is
    uint8 (N, H, W, C) or (N, H, W) in 0..255 (what ``dgm-sample`` writes)."""
    path = Path(path).expanduser().resolve()
    if path.is_dir():
        from PIL import Image

        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        if not files:
            raise DataError(f"{path} holds no .png/.jpg images; pass a folder of images or an .npz from dgm-sample.")
        arrays = []
        for file in files:
            image = Image.open(file)
            arrays.append(np.asarray(image.convert("L" if image.mode in ("1", "L", "I", "I;16") else "RGB")))
        if len({a.shape for a in arrays}) > 1:
            raise DataError(f"the images in {path} do not all have the same size and channels; resize them first.")
        array = np.stack(arrays)
    elif path.suffix == ".npz" and path.is_file():
        try:
            with np.load(path) as data:
                if "images" not in data:
                    raise DataError(f"{path} has no 'images' array; write it with dgm-sample or np.savez(images=...).")
                array = data["images"]
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:  # not a zip, truncated, a pickle
            raise DataError(f"{path} is not a readable .npz archive ({type(error).__name__}); pass an .npz written by "
                            "dgm-sample or np.savez(images=...).") from None
    else:
        raise DataError(f"images={path} is neither a folder of images nor an existing .npz file.")
    if array.dtype != np.uint8 or array.ndim not in (3, 4) or len(array) < 2:
        raise DataError(f"{path} must hold at least 2 uint8 images (N, H, W[, C]) in 0..255, got {array.dtype} {array.shape}.")
    images = torch.from_numpy(array.copy())
    return images.unsqueeze(1) if images.dim() == 3 else images.permute(0, 3, 1, 2).contiguous()
