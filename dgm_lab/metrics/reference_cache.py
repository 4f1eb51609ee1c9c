"""Features of the real reference images, cached on disk and keyed by everything that changes
them (dataset, split, number of images, extractor, its weights' hash, layers, resize).

Writes are atomic, so concurrent DDP ranks and sweep jobs may share one cache folder; a corrupt
or foreign entry is recomputed, never fatal.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import torch

from dgm_lab.files import user_cache_dir, write_atomically
from dgm_lab.metrics.extractors import Extractor
from dgm_lab.metrics.features import extract
from dgm_lab.metrics.scores import fid_statistics

log = logging.getLogger("dgm_lab")

CACHE_FORMAT = 2  # 2: keyed by the data's fingerprint too


def default_cache_dir() -> Path:
    return user_cache_dir("fidelity")


def reference_key(extractor: Extractor, dataset: str, split: str, num_real: int, data_fingerprint: str = "",
                  layers: list[str] | None = None) -> dict:
    """Everything that changes the reference features; its hash names the cache file.
    ``data_fingerprint`` (``InMemoryImageData.fingerprint``) tells apart two folders of one name;
    ``layers``: those the selected metrics read (``feature_metric.reference_layers``), by default the built-ins'."""
    return {"format": CACHE_FORMAT, "dataset": dataset, "data_fingerprint": data_fingerprint or dataset,
            "split": split, "num_images_requested": num_real,
            "selection": "first images of the split in its fixed order", "images": "grey levels (binarize=none), uint8 round(255 x)",
            "extractor": extractor.name, "weights_sha256": extractor.weights_sha256,
            "layers": sorted(layers or extractor.reference_layers), "resize": extractor.resize}


def reference_features(extractor: Extractor, net, dataset: str, split: str, num_real: int,
                       load_images: Callable[[], torch.Tensor], cache_dir: str | None, batch_size: int,
                       device, data_fingerprint: str = "", layers: list[str] | None = None) -> tuple[dict, dict]:
    """({layer: features, "fid_mu", "fid_sigma", "num_images"}, cache record), from the cache if present.

    ``load_images()`` returns the split's first ``num_real`` uint8 images (N, C, H, W) in grey levels
    (``InMemoryImageData.reference_images``); it is only called on a cache miss."""
    key = reference_key(extractor, dataset, split, num_real, data_fingerprint, layers)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    folder = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    path = folder / f"{dataset}-{split}-n{num_real}-{extractor.name}-{digest}.pt"
    if path.exists():
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
            if entry.get("key") == key:
                log.info("reference statistics: cache hit %s", path)
                return entry, {"status": "hit", "path": str(path), "key": key}
        except Exception:  # a corrupt cache entry is recomputed, never fatal
            pass
    started = time.time()
    images = load_images()[:num_real]
    features = extract(net, images, batch_size, device, extractor.channels)
    stats = fid_statistics(features[extractor.layer("fid")])
    entry = {"key": key, "num_images": len(images), "features": features,
             "fid_mu": torch.from_numpy(stats["mu"]), "fid_sigma": torch.from_numpy(stats["sigma"])}
    try:
        write_atomically(path, lambda temporary: torch.save(entry, temporary))
        log.info("reference statistics: cache miss, computed in %.1fs and saved to %s", time.time() - started, path)
    except OSError as error:  # a read-only cache only costs time
        log.warning("reference statistics could not be cached at %s (%s)", path, error)
    return entry, {"status": "miss", "path": str(path), "key": key}
