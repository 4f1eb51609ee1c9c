"""``data=image_folder``: any folder of images, decoded once into a uint8 cache, served from memory.

    dgm-train data=image_folder data.root=/path/to/images data.image_size=64 data.channels=3

Layout (searched recursively; png, jpg, jpeg, bmp, webp in any case):
  * ``<root>/<class>/.../<image>``: one class per first-level sub-folder, labels in sorted name order;
  * ``<root>/<image>`` (no sub-folders): one class;
  * ``<root>/train/...`` and ``<root>/test/...``: those splits (each laid out as above), with
    ``val_size`` images held out from train; otherwise train/val/test are drawn from all images.
All cuts use the fixed DATA_SEED, so every run of any seed sees the same splits.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from dgm_lab.data import image_cache, image_files
from dgm_lab.data.base import TensorDataModule
from dgm_lab.data.image_files import BadImage, ImageFile
from dgm_lab.data.splits import check_size, cut, held_out_sizes, uint8_to_float
from dgm_lab.errors import ConfigError, DataError

log = logging.getLogger(__name__)

BAD_IMAGE_MODES = ("error", "skip")
SPLIT_FOLDERS = ("train", "test")
DEFAULT_TEST_SIZE = 0.1
CHUNK = 256  # images per decode task: large enough that scheduling costs nothing next to decoding


class ImageFolderDataModule(TensorDataModule):
    """Images float in [0, 1] (N, C, H, W), labels int64 (N,) from the class sub-folders.

    ``class_names`` lists the classes in label order; ``skipped`` the files (relative to the root)
    left out with ``on_bad_image=skip``; ``fingerprint`` the cache key (files + transform).
    """

    name = "image_folder"

    def __init__(
        self,
        root: str,
        image_size: int | None = None,
        channels: int = 3,
        val_size: float | int = 0.1,
        test_size: float | int | None = None,
        on_bad_image: str = "error",
        cache_dir: str | None = None,
        decode_workers: int = 1,
        name: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _check_options(image_size, channels, on_bad_image, decode_workers)
        check_size(val_size, "data.val_size")
        if test_size is not None:
            check_size(test_size, "data.test_size")
        if name:
            self.name = name
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise DataError(f"data.root {self.root} is not a folder; point it at a folder of images.")
        self.image_size, self.channels, self.on_bad_image = image_size, channels, on_bad_image
        self.val_size, self.test_size = val_size, test_size
        self.decode_workers = decode_workers
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else image_cache.default_cache_dir()

        self.files, self.split_of = self._list_files()
        self.class_names, self.file_labels = _classes(self.files, self.split_of, self.root)
        self.num_classes = len(self.class_names)
        self.image_shape, self._shape_source = self._image_shape()
        self.fingerprint = image_cache.cache_key(self.files, self.transform)
        self.skipped: list[str] = []
        self._pixels: np.ndarray | None = None  # decoded in prepare_data, released by load_splits
        self._skipped_index = np.zeros(0, dtype=np.int64)

    @property
    def transform(self) -> dict:
        """Everything besides the files that changes the decoded pixels (part of the cache key)."""
        return {"image_size": self.image_size, "channels": self.channels, "resize": "shorter_side_bicubic",
                "crop": "centre", "shape": list(self.image_shape) if self.image_size is None else None}

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    # -- listing -------------------------------------------------------------------------------
    def _list_files(self) -> tuple[list[ImageFile], list[str | None]]:
        """The images, and per image its split folder (``train``/``test``) or None."""
        files = image_files.find_images(self.root)
        split_folders = all((self.root / folder).is_dir() for folder in SPLIT_FOLDERS)
        if not split_folders:
            if not files:
                raise DataError(f"{self.root} holds no images ({', '.join(image_files.EXTENSIONS)}, searched "
                                "recursively); point data.root at a folder of images.")
            return files, [None] * len(files)
        if self.test_size is not None:
            raise ConfigError(f"{self.root} has train/ and test/ folders, which give the test split; remove "
                              f"data.test_size={self.test_size} (data.val_size sets the validation images).")
        kept = [f for f in files if f.relative.split("/", 1)[0] in SPLIT_FOLDERS]
        if len(kept) < len(files):
            log.warning("%d images under %s outside train/ and test/ are not used", len(files) - len(kept), self.root)
        split_of = [f.relative.split("/", 1)[0] for f in kept]
        for folder in SPLIT_FOLDERS:
            if folder not in split_of:
                raise DataError(f"{self.root / folder} holds no images ({', '.join(image_files.EXTENSIONS)}); "
                                f"add images there, or remove the empty {folder}/ folder to split all images.")
        return kept, split_of

    def _image_shape(self) -> tuple[tuple[int, int, int], str | None]:
        """(C, H, W) before any decoding (the model is built from it); without ``image_size``, the
        size of the first readable image, which every other image must share."""
        if self.image_size is not None:
            return (self.channels, self.image_size, self.image_size), None
        for file in self.files:
            try:
                width, height = image_files.open_size(self.root / file.relative)
            except BadImage as error:
                if self.on_bad_image == "error":
                    raise _bad_image_error(self.root / file.relative, str(error)) from None
                continue
            return (self.channels, height, width), file.relative
        raise DataError(f"none of the {len(self.files)} images under {self.root} could be decoded; check that "
                        "they are png, jpg, bmp or webp files.")

    # -- decoding and the cache ----------------------------------------------------------------
    def prepare_data(self) -> None:
        # Lightning calls this on one process per machine first: DDP ranks then find the cache.
        self._decoded()

    def _decoded(self) -> np.ndarray:
        """uint8 (N, C, H, W) of every readable file in listing order; sets ``self.skipped``."""
        if self._pixels is not None:
            return self._pixels
        path = image_cache.cache_path(self.cache_dir, self.root, self.transform)
        hit = image_cache.load(path, self.fingerprint)
        if hit is not None and hit[0].shape == (len(self.files) - len(hit[1]), *self.image_shape):
            pixels, skipped = hit
            log.info("image cache: %d images of %s loaded from %s", len(pixels), self.root, path)
        else:
            pixels, skipped = self._decode_all()
            image_cache.save(path, self.fingerprint, pixels, skipped)
        self._skipped_index = skipped
        self.skipped = [self.files[i].relative for i in skipped.tolist()]
        if self.skipped:
            if self.on_bad_image == "error":  # a cache written with on_bad_image=skip
                raise _bad_image_error(self.root / self.skipped[0], "an earlier run with on_bad_image=skip left it out")
            log.warning("%d of %d images under %s could not be decoded and were skipped (data.on_bad_image=skip), "
                        "first %s", len(self.skipped), len(self.files), self.root, self.skipped[0])
        if len(pixels) == 0:
            raise DataError(f"none of the {len(self.files)} images under {self.root} could be decoded.")
        self._pixels = pixels
        return pixels

    def _decode_all(self) -> tuple[np.ndarray, np.ndarray]:
        """Decode every file into one preallocated uint8 array (no list of per-image arrays to stack),
        with ``decode_workers`` threads: Pillow releases the GIL while it decodes and resizes."""
        started = time.time()
        pixels = np.empty((len(self.files), *self.image_shape), dtype=np.uint8)
        bad: dict[int, str] = {}  # index -> why Pillow failed
        mismatched: list[int] = []  # decoded, but not the size of the first image
        stop = threading.Event()

        def decode_chunk(start: int) -> None:
            for index in range(start, min(start + CHUNK, len(self.files))):
                if stop.is_set():
                    return
                try:
                    decoded = image_files.decode_image(self.root / self.files[index].relative, self.image_size,
                                                       self.channels)
                except BadImage as error:
                    bad[index] = str(error)
                    if self.on_bad_image == "error":
                        stop.set()
                    continue
                if decoded.shape[:2] != self.image_shape[1:]:
                    mismatched.append(index)
                    stop.set()  # a size mismatch is never skipped: it is a missing data.image_size
                    continue
                pixels[index] = decoded.transpose(2, 0, 1)

        starts = range(0, len(self.files), CHUNK)
        if self.decode_workers == 1:
            for start in starts:
                decode_chunk(start)
        else:
            with ThreadPoolExecutor(self.decode_workers, thread_name_prefix="decode") as pool:
                list(pool.map(decode_chunk, starts))
        self._raise_for(bad, mismatched)
        skipped = np.array(sorted(bad), dtype=np.int64)
        if len(skipped):
            pixels = np.delete(pixels, skipped, axis=0)
        seconds = time.time() - started
        log.info("decoded %d images of %s in %.1fs (%.0f images/s, %d worker%s)", len(self.files), self.root,
                 seconds, len(self.files) / max(seconds, 1e-9), self.decode_workers,
                 "s" if self.decode_workers > 1 else "")
        return pixels, skipped

    def _raise_for(self, bad: dict[int, str], mismatched: list[int]) -> None:
        if mismatched:
            file = self.root / self.files[min(mismatched)].relative
            width, height = image_files.open_size(file)
            _, first_height, first_width = self.image_shape
            raise DataError(f"{file} is {width}x{height} pixels but {self.root / self._shape_source} is "
                            f"{first_width}x{first_height}; set data.image_size to resize and centre-crop every "
                            "image to one square size.")
        if bad and self.on_bad_image == "error":
            first = min(bad)
            raise _bad_image_error(self.root / self.files[first].relative, bad[first])
        for index in sorted(bad):
            log.warning("skipped %s: %s", self.root / self.files[index].relative, bad[index])

    # -- splits ---------------------------------------------------------------------------------
    def load_splits(self):
        pixels = self._decoded()
        self._pixels = None  # the float splits replace it; do not keep both
        keep = np.ones(len(self.files), dtype=bool)
        keep[self._skipped_index] = False
        labels = self.file_labels[keep]
        split_of = np.array([s or "" for s in self.split_of], dtype=object)[keep]
        if self.split_of[0] is None:
            sizes = held_out_sizes(len(pixels), {"data.val_size": self.val_size,
                                                 "data.test_size": self.test_size or DEFAULT_TEST_SIZE}, str(self.root))
            return cut(pixels, labels, ["train", "val", "test"], sizes)
        train, test = np.flatnonzero(split_of == "train"), np.flatnonzero(split_of == "test")
        for folder, rows in (("train", train), ("test", test)):
            if not len(rows):
                raise DataError(f"none of the images in {self.root / folder} could be decoded.")
        sizes = held_out_sizes(len(train), {"data.val_size": self.val_size}, str(self.root / "train"))
        out = cut(pixels, labels, ["train", "val"], sizes, subset=train)
        out["test"] = (uint8_to_float(pixels, torch.from_numpy(test)), torch.from_numpy(labels[test]))
        return out


def _classes(files: list[ImageFile], split_of: list[str | None], root: Path) -> tuple[list[str], np.ndarray]:
    """(class names in label order, label per file): the first folder below the root (or below
    train/ and test/); a folder with images directly in it and no sub-folders is one class."""
    inner = [f.relative.split("/", 1)[1] if split else f.relative for f, split in zip(files, split_of, strict=True)]
    folders = [path.split("/", 1)[0] if "/" in path else None for path in inner]
    loose = [f.relative for f, folder in zip(files, folders, strict=True) if folder is None]
    if not loose:
        names = sorted(set(folders))
        index = {name: i for i, name in enumerate(names)}
        return names, np.array([index[folder] for folder in folders], dtype=np.int64)
    if len(loose) < len(files):
        nested = next(f.relative for f, folder in zip(files, folders, strict=True) if folder is not None)
        raise DataError(f"{root} has images both in class sub-folders ({nested}) and directly in the folder they "
                        f"classify ({loose[0]}); move every image into a class sub-folder, or all out of them.")
    return [root.name or "images"], np.zeros(len(files), dtype=np.int64)


def _check_options(image_size, channels, on_bad_image, decode_workers) -> None:
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1):
        raise ConfigError(f"data.image_size must be a positive number of pixels or null, got {image_size!r}.")
    if channels not in (1, 3):
        raise ConfigError(f"data.channels must be 1 (grey) or 3 (RGB), got {channels!r}.")
    if on_bad_image not in BAD_IMAGE_MODES:
        raise ConfigError(f"data.on_bad_image={on_bad_image!r} is not one of {', '.join(BAD_IMAGE_MODES)}.")
    if not isinstance(decode_workers, int) or decode_workers < 1:
        raise ConfigError(f"data.decode_workers must be a positive number of threads, got {decode_workers!r}.")


def _bad_image_error(path: Path, reason: str) -> DataError:
    reason = reason.replace(f" '{path}'", "").replace(str(path), "the file")  # Pillow repeats the path
    return DataError(f"{path} could not be decoded as an image ({reason}); replace or delete it, or set "
                     "data.on_bad_image=skip to leave such files out.")
