"""Finding image files under a folder and decoding them into fixed-size uint8 arrays with Pillow."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


@dataclass(frozen=True)
class ImageFile:
    """One image found under the root: its path relative to the root, size in bytes, mtime in ns."""

    relative: str
    size: int
    mtime_ns: int


def find_images(root: Path) -> list[ImageFile]:
    """Every image under ``root`` (recursive, extensions case-insensitive), sorted by relative path.

    Hidden files and folders are left out: macOS writes ``._name.jpg`` resource forks and
    ``.DS_Store`` files beside images, which carry image extensions but no image."""
    found: list[ImageFile] = []
    prefix = len(os.path.join(str(root), ""))  # relative paths by slicing: Path objects cost ~10 us a file
    pending = [str(root)]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    pending.append(entry.path)
                elif entry.name.lower().endswith(EXTENSIONS) and entry.is_file():
                    stat = entry.stat()
                    relative = entry.path[prefix:].replace(os.sep, "/")
                    found.append(ImageFile(relative, stat.st_size, stat.st_mtime_ns))
    return sorted(found, key=lambda f: f.relative)


class BadImage(Exception):
    """A file that Pillow cannot decode; the message says why."""


def open_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header only, after EXIF rotation, without decoding pixels."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1)  # 5..8 are quarter turns: sides swap
    except Exception as error:  # Pillow raises many types for a bad file
        raise BadImage(_reason(error)) from None
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def decode_image(path: Path, image_size: int | None, channels: int) -> np.ndarray:
    """uint8 (H, W, channels) of one file: EXIF rotation applied, 16-bit grey scaled to 8 bits,
    converted to grey (``L``) or RGB (alpha dropped), then with ``image_size`` the shorter side resized to it (bicubic, antialiased)
    and the centre square cropped. Raises BadImage for a file Pillow cannot decode."""
    try:
        with Image.open(path) as image:
            if image_size is not None and image.format == "JPEG":
                # libjpeg decodes at 1/2, 1/4 or 1/8 scale while both sides stay >= image_size: a
                # large photo then decodes many times faster than at full size.
                image.draft(image.mode, (image_size, image_size))
            image = ImageOps.exif_transpose(image)
            if image.mode.startswith("I"):  # 16-bit grey (PNG): Pillow's convert clips everything above 255
                image = Image.fromarray(np.rint(np.asarray(image, dtype=np.float64) / 257).clip(0, 255).astype(np.uint8))
            if image.mode == "P" and "transparency" in image.info:
                image = image.convert("RGBA")  # Pillow's advice for palette images with transparency
            image = image.convert("L" if channels == 1 else "RGB")
            if image_size is not None:
                image = resize_and_crop(image, image_size)
            pixels = np.asarray(image, dtype=np.uint8)
    except Exception as error:  # truncated data, unknown format, decompression bomb: all mean a bad file
        raise BadImage(_reason(error)) from None
    return pixels.reshape(pixels.shape[0], pixels.shape[1], channels)


def resize_and_crop(image: Image.Image, image_size: int) -> Image.Image:
    """Shorter side resized to ``image_size``, then the centre ``image_size`` square cut out
    (an odd margin leaves its extra pixel on the right / bottom)."""
    width, height = image.size
    scale = image_size / min(width, height)
    new_size = (max(image_size, round(width * scale)), max(image_size, round(height * scale)))
    if new_size != image.size:
        image = image.resize(new_size, Image.Resampling.BICUBIC)
    left, top = (new_size[0] - image_size) // 2, (new_size[1] - image_size) // 2
    return image.crop((left, top, left + image_size, top + image_size))


def _reason(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
