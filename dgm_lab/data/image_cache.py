"""The decoded-image cache: one uncompressed ``.npz`` per image folder and transform.

Decoding 60,000 small JPEGs takes tens of seconds; reading their uint8 pixels back takes well
under one. An entry holds ``images`` uint8 (N, C, H, W), ``skipped`` (indices of undecodable
files in the listing) and ``key``: the SHA-256 of the format version, the transform and every
file's relative path, size and mtime, so any added, removed or rewritten file rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import zipfile
from pathlib import Path

import numpy as np

from dgm_lab.data.image_files import ImageFile
from dgm_lab.files import user_cache_dir, write_atomically

log = logging.getLogger(__name__)

# Bump when decoding changes (resampling filter, crop, colour conversion): old entries then miss.
FORMAT_VERSION = 1


def default_cache_dir() -> Path:
    return user_cache_dir("images")


def cache_key(files: list[ImageFile], transform: dict) -> str:
    digest = hashlib.sha256(json.dumps({"format": FORMAT_VERSION, "transform": transform}, sort_keys=True).encode())
    for file in files:
        digest.update(f"\n{file.relative}\0{file.size}\0{file.mtime_ns}".encode())
    return digest.hexdigest()


def cache_path(cache_dir: Path, root: Path, transform: dict) -> Path:
    """One entry per folder and transform, replaced (not accumulated) when the files change."""
    where = json.dumps({"root": str(root), "transform": transform}, sort_keys=True).encode()
    return cache_dir / f"{root.name or 'root'}-{hashlib.sha256(where).hexdigest()[:16]}.npz"


def load(path: Path, key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(images, skipped) of the entry at ``path`` if it holds ``key``; None on a miss. A corrupt or
    unreadable entry is a miss (and removed), never an error."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as entry:
            if str(entry["key"]) != key:
                log.info("image cache: %s is out of date (files or transform changed); decoding again", path)
                return None
            images, skipped = entry["images"], entry["skipped"]
        if images.dtype != np.uint8 or images.ndim != 4 or skipped.ndim != 1:
            raise ValueError("unexpected arrays")
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        log.warning("image cache: %s is corrupt (%s); decoding again", path, error)
        path.unlink(missing_ok=True)
        return None
    return images, skipped


def save(path: Path, key: str, images: np.ndarray, skipped: np.ndarray) -> None:
    """Write atomically (temporary file, then rename), so a reader never sees half an entry and
    concurrent writers (DDP ranks, sweep jobs) leave one whole entry. A read-only cache folder only
    costs the next run the decode time."""
    def write(temporary: Path) -> None:
        with open(temporary, "wb") as f:
            np.savez(f, images=images, skipped=skipped.astype(np.int64), key=np.array(key))

    try:
        write_atomically(path, write)
    except OSError as error:
        log.warning("image cache: could not write %s (%s); the next run decodes again", path, error)
