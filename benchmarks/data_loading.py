"""Data: batches per second of each datamodule's training loader versus indexing the same in-memory
tensor by hand, and the image-folder datamodule's decode throughput versus a plain PIL loop."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.step import compose_config
from benchmarks.timing import alternate, row, seconds
from dgm_lab import builders

DATAMODULES = {"digits": [], "mnist_5k": [], "mnist": [], "fashion_mnist": [], "ring8": [], "cifar10_jpeg": []}
SMOKE = ("digits", "ring8")


def loader_throughput(name: str, batches: int, repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_config([f"data={name}", *DATAMODULES[name]], tmp)
        data = builders.build_datamodule(cfg)
        data.setup()
    images, labels = data.splits["train"].images, data.splits["train"].labels
    batch = data.batch_size
    count = min(batches, len(images) // batch)

    def framework():
        for i, _ in enumerate(data.train_dataloader()):
            if i + 1 == count:
                break

    def by_hand():
        order = torch.randperm(len(images))
        for i in range(count):
            index = order[i * batch : (i + 1) * batch]
            images[index], labels[index]

    result = alternate(seconds(framework), seconds(by_hand), repeats, warmup=1)
    return row("data", f"{name} train loader, batch {batch}", "datamodule.train_dataloader()",
               "indexing the in-memory tensor", "CPU ms/batch", result, scale=1000 / count)


def decode_throughput(root: Path, count: int, repeats: int) -> dict:
    """``count`` JPEGs of the CIFAR-10 copy, decoded into the datamodule's cache (a fresh cache each
    time) versus opened, converted and resized with PIL in a loop."""
    from PIL import Image

    from dgm_lab.data.image_folder import ImageFolderDataModule

    files = sorted((root / "train").rglob("*.jpg"))[:count]
    folder = Path(tempfile.mkdtemp())
    for i, path in enumerate(files):
        target = folder / path.parent.name / f"{i}.jpg"
        target.parent.mkdir(exist_ok=True)
        target.symlink_to(path)

    def framework():
        ImageFolderDataModule(root=str(folder), image_size=32, channels=3, cache_dir=tempfile.mkdtemp(dir=folder),
                              val_size=0.1).setup()

    def by_hand():
        np.stack([np.asarray(Image.open(p).convert("RGB").resize((32, 32))) for p in files])

    result = alternate(seconds(framework), seconds(by_hand), repeats)
    return row("data", f"image-folder decode, {count} JPEGs", "ImageFolderDataModule.setup()",
               "PIL open/convert/resize loop", "CPU ms/image", result, scale=1000 / count)


def run(smoke: bool, repeats: int, data_dir: Path) -> list[dict]:
    rows = []
    for name in SMOKE if smoke else DATAMODULES:
        rows.append(loader_throughput(name, 20 if smoke else 200, repeats))
        print(rows[-1]["name"], round(rows[-1]["ratio"], 3), flush=True)
    root = data_dir / "CIFAR-10-images"
    if root.is_dir():
        rows.append(decode_throughput(root, 40 if smoke else 2000, repeats))
    else:
        rows.append(row("data", "image-folder decode", "ImageFolderDataModule.setup()", "PIL loop", "CPU ms/image", None,
                        note=f"not measured: {root} is missing"))
    return rows
