"""Sample-quality metrics (FID, Inception Score, KID, precision/recall) through torch-fidelity,
with the evaluation protocol recorded beside every score and cached reference statistics.

One evaluation: resolve the feature extractor (``resolve_extractor``: fails before training when
weights are missing) -> reference features of the first ``num_real`` images of a split (cached on
disk, keyed by everything that changes them) -> features of exactly ``num_samples`` generated
images (sharded over DDP ranks by fixed chunks, gathered, so every rank holds the same set as a
single process would) -> torch-fidelity's own metric functions on every rank.

Numerics, checked in torch-fidelity 0.4.0: its FID takes sigma from ``np.cov`` (always float64)
but mu from ``np.mean`` in the features' dtype (float32 for InceptionV3), computes
tr sqrt(S1 S2) as the sum of square roots of the eigenvalues of S1 S2 in complex128 keeping the
real part, and returns a negative FID from round-off unchanged. Here features are cast to float64
before statistics (mu and sigma float64) and FID is clipped at 0; the raw value is kept in the
protocol (``fid_raw``). Input convention of every extractor: uint8 (N, C, H, W) in 0..255; model
samples in [0, 1] are quantized as ``round(255 x)``, exactly as ``dgm-sample`` writes them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch_fidelity
from torch_fidelity.defaults import DEFAULTS
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
from torch_fidelity.metric_fid import (
    KEY_METRIC_FID,
    fid_features_to_statistics,
    fid_statistics_to_metric,
)
from torch_fidelity.metric_isc import (
    KEY_METRIC_ISC_MEAN,
    KEY_METRIC_ISC_STD,
    isc_features_to_metric,
)
from torch_fidelity.metric_kid import (
    KEY_METRIC_KID_MEAN,
    KEY_METRIC_KID_STD,
    kid_features_to_metric,
)
from torch_fidelity.metric_prc import (
    KEY_METRIC_PRECISION,
    KEY_METRIC_RECALL,
    prc_features_to_metric,
)
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
from torch_fidelity.utils import create_feature_extractor

from dgm_lab.errors import ConfigError, DataError
from dgm_lab.metrics import lenet

log = logging.getLogger("dgm_lab")

FEATURE_METRICS = ("fid", "is", "kid", "prc")  # computed from extractor features
ALL_METRICS = (*FEATURE_METRICS, "cas")  # cas: classification accuracy score (dgm_lab.metrics.cas)
TF_METRIC = {"fid": "fid", "is": "isc", "kid": "kid", "prc": "prc"}  # torch-fidelity's names
INCEPTION = "inception-v3-compat"
INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"  # pytorch-fid's name for the same TF port
INCEPTION_FILES = (INCEPTION_FILE, Path(URL_INCEPTION_V3).name)  # both load into torch-fidelity's net
PYTORCH_FID_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{INCEPTION_FILE}"
INCEPTION_RESIZE = "torch-fidelity's TF1-compatible bilinear resize to 299x299; grey replicated to RGB"
RNG_SEED = DEFAULTS["rng_seed"]  # torch-fidelity's seed for IS splits and KID subsets (2020)
CACHE_FORMAT = 1


@dataclass
class Settings:
    """The ``metrics`` config node (conf/metrics/common.yaml documents every field)."""

    compute: dict = field(default_factory=dict)
    feature_extractor: str = "lenet"
    lenet_weights: str | None = None
    inception_weights: str | None = None
    download: bool = True
    on_missing_weights: str = "error"
    num_samples: int = 10000
    num_real: int = 10000
    reference_split: str = "val"
    seed: int = 0
    batch_size: int = 500
    isc_splits: int = 10
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    prc_neighborhood: int = 3
    cache_dir: str | None = None
    every_n_epochs: int | None = 1
    every_n_steps: int | None = None
    on_test: bool = True
    cas_num_samples: int = 10000
    cas_epochs: int = 5

    @classmethod
    def from_config(cls, node) -> Settings:
        node = dict(node or {})
        unknown = sorted(set(node) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"unknown metrics setting(s) {', '.join(unknown)}; see conf/metrics/common.yaml.")
        settings = cls(**node)
        settings.compute = {k: bool(v) for k, v in dict(settings.compute or {}).items()}
        bad = sorted(set(settings.compute) - set(ALL_METRICS))
        if bad:
            raise ConfigError(f"unknown metric(s) {', '.join(bad)}; choose from metrics=[{','.join(ALL_METRICS)}].")
        if settings.on_missing_weights not in ("error", "skip"):
            raise ConfigError(f"metrics.on_missing_weights must be error or skip, got {settings.on_missing_weights!r}.")
        if settings.feature_extractor not in ("lenet", *lenet.LENETS, INCEPTION):
            raise ConfigError(f"metrics.feature_extractor must be lenet, {', '.join(lenet.LENETS)} or {INCEPTION}, "
                              f"got {settings.feature_extractor!r}.")
        for key in ("num_samples", "num_real", "batch_size", "isc_splits", "kid_subsets", "kid_subset_size",
                    "prc_neighborhood", "cas_num_samples", "cas_epochs"):
            if not isinstance(getattr(settings, key), int) or getattr(settings, key) < 1:
                raise ConfigError(f"metrics.{key} must be a positive integer, got {getattr(settings, key)!r}.")
        if settings.num_samples < 2 or settings.num_real < 2:
            raise ConfigError("metrics.num_samples and metrics.num_real must be at least 2 (covariances).")
        return settings

    @property
    def selected(self) -> tuple[str, ...]:
        return tuple(m for m in ALL_METRICS if self.compute.get(m))

    @property
    def feature_metrics(self) -> tuple[str, ...]:
        return tuple(m for m in FEATURE_METRICS if self.compute.get(m))


# -- feature extractors and their weights ------------------------------------------------------
@dataclass(frozen=True)
class Extractor:
    """A resolved torch-fidelity feature extractor: registry name, weights file and its hash."""

    name: str
    weights: str
    weights_sha256: str
    suffix: str  # appended to logged names: "_lenet" -> val/fid_lenet; "" for InceptionV3 -> val/fid
    resize: str
    channels: int  # channels the network takes (grey is replicated for InceptionV3)

    def layer(self, metric: str) -> str:
        return FEATURE_EXTRACTORS_REGISTRY[self.name].get_default_feature_layer_for_metric(TF_METRIC[metric])

    @property
    def reference_layers(self) -> list[str]:
        """Layers of the two-sample metrics (FID, KID, PR): what the reference cache holds."""
        return sorted({self.layer(m) for m in ("fid", "kid", "prc")})

    def build(self, device) -> torch.nn.Module:
        layers = sorted({self.layer(m) for m in FEATURE_METRICS})
        net = create_feature_extractor(self.name, layers, cuda=False, feature_extractor_weights_path=self.weights,
                                       verbose=False)
        return net.to(device)


def file_sha256(path: str | Path) -> str:
    path = Path(path)
    stat = path.stat()
    return _sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_extractor(settings: Settings, dataset: str) -> Extractor | None:
    """The extractor for ``settings`` on ``dataset``; None when Inception weights are missing and
    ``on_missing_weights=skip`` (a warning is logged). Raises DataError otherwise, before any training."""
    chosen = settings.feature_extractor
    if chosen != INCEPTION:
        name = chosen if chosen in lenet.LENETS else (
            "lenet-fashion-mnist" if dataset == "fashion_mnist" else "lenet-mnist")
        path = Path(settings.lenet_weights).expanduser().resolve() if settings.lenet_weights else lenet.LENETS[name]
        lenet.load_lenet(path)  # a missing or foreign file fails here, in one sentence
        return Extractor(name, str(path), file_sha256(path), "_lenet", lenet.RESIZE, 1)
    path = find_inception_weights(settings)
    if path is None:
        message = missing_inception_message(settings)
        if settings.on_missing_weights == "skip":
            log.warning("skipping %s: %s", ", ".join(settings.feature_metrics), message)
            return None
        raise DataError(message)
    check_inception_file(str(path))
    return Extractor(INCEPTION, str(path), file_sha256(path), "", INCEPTION_RESIZE, 3)


def hub_checkpoints() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_inception_weights(settings: Settings) -> Path | None:
    """metrics.inception_weights, else the torch hub cache, else a download when online."""
    if settings.inception_weights:
        path = Path(settings.inception_weights).expanduser().resolve()
        if not path.is_file():
            raise DataError(f"metrics.inception_weights={path} does not exist; point it at {INCEPTION_FILE}.")
        return path
    for name in INCEPTION_FILES:
        if (hub_checkpoints() / name).is_file():
            return hub_checkpoints() / name
    if settings.download:
        target = hub_checkpoints() / INCEPTION_FILES[1]
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(20)  # a dead network must fail in seconds, not hang the run
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(URL_INCEPTION_V3, str(target), progress=False)
            return target
        except Exception as error:  # offline, proxy, disk full: all end in the same advice
            log.info("InceptionV3 weights download failed (%s)", type(error).__name__)
        finally:
            socket.setdefaulttimeout(previous)
    return None


def missing_inception_message(settings: Settings) -> str:
    wanted = ", ".join(settings.feature_metrics) or "the Inception metrics"
    return (f"InceptionV3 weights for {wanted} are not available offline: put {INCEPTION_FILE} "
            f"(from {PYTORCH_FID_URL}) in {hub_checkpoints()}/ or pass metrics.inception_weights=<path to it>, "
            "or use metrics.feature_extractor=lenet or metrics.on_missing_weights=skip.")


@functools.lru_cache(maxsize=4)
def check_inception_file(path: str) -> None:
    """Fail in one sentence unless ``path`` holds the InceptionV3 state dict torch-fidelity loads."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        ok = tuple(state["fc.weight"].shape) == (1008, 2048) and "Conv2d_1a_3x3.conv.weight" in state
    except Exception:
        ok = False
    if not ok:
        raise DataError(f"{path} is not the InceptionV3 FID weights file (a state dict with fc.weight of shape "
                        f"1008x2048, as in {INCEPTION_FILE}); download it again.")


# -- images and features -----------------------------------------------------------------------
def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images (N, C, H, W) in [0, 1] -> uint8 0..255, ``round(255 x)`` as dgm-sample saves them."""
    return images.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8)


@torch.no_grad()
def extract(net, images: torch.Tensor, batch_size: int, device, channels: int) -> dict[str, torch.Tensor]:
    """Features of uint8 images (N, C, H, W) as {layer: float32 (N, D) on the CPU}.

    float32 is the networks' own output precision (exact); statistics are taken in float64 later."""
    if images.dtype != torch.uint8:
        raise ValueError(f"feature extraction takes uint8 images in 0..255, got {images.dtype}")
    out: dict[str, list] = {}
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size].to(device)
        if channels == 3 and batch.shape[1] == 1:
            batch = batch.expand(-1, 3, -1, -1)
        for layer, value in net.convert_features_tuple_to_dict(net(batch)).items():
            out.setdefault(layer, []).append(value.float().cpu())
    return {layer: torch.cat(parts) for layer, parts in out.items()}


def chunks(num_samples: int, chunk_size: int) -> list[tuple[int, int, int]]:
    """(chunk index, first sample, size): the fixed plan every world size draws the same samples by."""
    return [(i, start, min(chunk_size, num_samples - start)) for i, start in enumerate(range(0, num_samples, chunk_size))]


@torch.no_grad()
def generated_features(model, net, extractor: Extractor, settings: Settings, device, rank: int = 0,
                       world_size: int = 1) -> dict[str, torch.Tensor]:
    """Features of exactly ``settings.num_samples`` samples of ``model``, identical for any world size.

    Chunk i is drawn with its own generator (seed, i) on rank ``i % world_size``; the chunks are
    gathered and put back in order, so no sample is padded or duplicated and every rank ends with
    the same (num_samples, D) features. Conditional models get class-balanced labels (i mod K)."""
    was_training = model.training
    model.eval()
    local = {}
    try:
        for index, start, size in chunks(settings.num_samples, settings.batch_size):
            if index % world_size != rank:
                continue
            generator = torch.Generator().manual_seed(settings.seed * 1_000_003 + index)
            labels = None
            if getattr(model, "conditional", False):
                labels = (torch.arange(start, start + size) % model.num_classes).to(model.device)
            images = model.sample(size, generator=generator, labels=labels)
            local[index] = extract(net, to_uint8(images), settings.batch_size, device, extractor.channels)
    finally:
        model.train(was_training)
    gathered = gather_objects(local, world_size)
    ordered = [gathered[i] for i in sorted(gathered)]
    features = {layer: torch.cat([part[layer] for part in ordered]) for layer in ordered[0]}
    assert all(len(v) == settings.num_samples for v in features.values()), "sample count drifted"
    return features


def gather_objects(local: dict, world_size: int) -> dict:
    """Merge per-rank dicts on every rank (all_gather, not a rank-0 gather: every rank computes)."""
    if world_size == 1:
        return local
    import torch.distributed as dist

    parts = [None] * world_size
    dist.all_gather_object(parts, local)
    merged = {}
    for part in parts:
        merged.update(part)
    return merged


# -- reference features (cached) ---------------------------------------------------------------
def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dgm-lab" / "fidelity"


def reference_key(extractor: Extractor, dataset: str, split: str, num_real: int) -> dict:
    """Everything that changes the reference features; its hash names the cache file."""
    return {"format": CACHE_FORMAT, "dataset": dataset, "split": split, "num_images_requested": num_real,
            "selection": "first images of the split in its fixed order", "images": "grey levels (binarize=none), uint8 round(255 x)",
            "extractor": extractor.name, "weights_sha256": extractor.weights_sha256,
            "layers": extractor.reference_layers, "resize": extractor.resize}


def reference_features(extractor: Extractor, net, dataset: str, split: str, num_real: int,
                       load_images: Callable[[], torch.Tensor], cache_dir: str | None, batch_size: int,
                       device) -> tuple[dict, dict]:
    """({layer: features, "fid_mu", "fid_sigma", "num_images"}, cache record), from the cache if present.

    ``load_images()`` returns the split's first ``num_real`` float images in [0, 1]; it is only called
    on a cache miss. Writes are atomic, so concurrent ranks and sweep jobs may share the folder."""
    key = reference_key(extractor, dataset, split, num_real)
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
    features = extract(net, to_uint8(images), batch_size, device, extractor.channels)
    stats = fid_statistics(features[extractor.layer("fid")])
    entry = {"key": key, "num_images": len(images), "features": features,
             "fid_mu": torch.from_numpy(stats["mu"]), "fid_sigma": torch.from_numpy(stats["sigma"])}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save(entry, tmp)
        tmp.replace(path)
        log.info("reference statistics: cache miss, computed in %.1fs and saved to %s", time.time() - started, path)
    except OSError as error:  # a read-only cache only costs time
        log.warning("reference statistics could not be cached at %s (%s)", path, error)
    return entry, {"status": "miss", "path": str(path), "key": key}


# -- metrics (torch-fidelity's functions) and the protocol --------------------------------------
def fid_statistics(features: torch.Tensor) -> dict:
    """{"mu": (D,), "sigma": (D, D)} float64 numpy, by torch-fidelity on float64 features."""
    return fid_features_to_statistics(features.double())


def compute_scores(metrics, generated: dict, reference: dict | None, extractor: Extractor,
                   settings: Settings) -> tuple[dict, dict]:
    """({metric: value}, details) from features; ``generated`` is input1 (generated), ``reference``
    input2 (real). Precision: fraction of generated samples inside the real manifold (quality);
    recall: fraction of real samples inside the generated manifold (coverage)."""
    scores, details = {}, {}
    n_gen = len(next(iter(generated.values())))
    if "is" in metrics:
        splits = min(settings.isc_splits, n_gen)
        out = isc_features_to_metric(generated[extractor.layer("is")], splits=splits, shuffle=True, rng_seed=RNG_SEED)
        scores.update({"is": out[KEY_METRIC_ISC_MEAN], "is_std": out[KEY_METRIC_ISC_STD]})
        details["isc_splits"] = splits
    if "fid" in metrics:
        stats_gen = fid_statistics(generated[extractor.layer("fid")])
        stats_real = {"mu": reference["fid_mu"].double().numpy(), "sigma": reference["fid_sigma"].double().numpy()}
        raw = fid_statistics_to_metric(stats_gen, stats_real, verbose=False)[KEY_METRIC_FID]
        scores["fid"] = max(raw, 0.0) if math.isfinite(raw) else raw  # round-off below 0 is a zero distance
        details["fid_raw"] = raw
    if "kid" in metrics:
        real = reference["features"][extractor.layer("kid")]
        size = min(settings.kid_subset_size, n_gen, len(real))
        out = kid_features_to_metric(generated[extractor.layer("kid")].double(), real.double(), kid_subsets=settings.kid_subsets,
                                     kid_subset_size=size, rng_seed=RNG_SEED, verbose=False)
        scores.update({"kid": out[KEY_METRIC_KID_MEAN], "kid_std": out[KEY_METRIC_KID_STD]})
        details.update(kid_subsets=settings.kid_subsets, kid_subset_size=size)
    if "prc" in metrics:
        real = reference["features"][extractor.layer("prc")]
        out = prc_features_to_metric(generated[extractor.layer("prc")].double(), real.double(),
                                     prc_neighborhood=settings.prc_neighborhood, prc_batch_size=2000,
                                     save_cpu_ram=True, verbose=False)
        scores.update({"precision": out[KEY_METRIC_PRECISION], "recall": out[KEY_METRIC_RECALL]})
        details["prc_neighborhood"] = settings.prc_neighborhood
    return scores, details


def logged_names(scores: dict, split: str, suffix: str) -> dict:
    """{"fid": 3.1, "is_std": 0.1} -> {"val/fid_lenet": 3.1, "val/is_lenet_std": 0.1}."""
    out = {}
    for name, value in scores.items():
        base, _, tail = name.partition("_")
        out[f"{split}/{base}{suffix}" + (f"_{tail}" if tail else "")] = float(value)
    return out


def versions() -> dict:
    import scipy

    import dgm_lab

    return {"torch_fidelity": torch_fidelity.__version__, "torch": torch.__version__, "numpy": np.__version__,
            "scipy": scipy.__version__, "dgm_lab": dgm_lab.__version__}


def protocol(metrics, extractor: Extractor, settings: Settings, dataset: str, split: str, num_generated: int,
             num_real: int | None, generated_source: dict, cache: dict | None, details: dict) -> dict:
    """What a score depends on, recorded next to it in summary.json, eval.json and W&B."""
    return {
        "metrics": list(metrics), "num_generated": num_generated, "num_real": num_real,
        "reference": {"dataset": dataset, "split": split, "selection": "first num_real images, fixed order",
                      "images": "grey levels (no binarization), uint8 round(255 x)"},
        "generated": {**generated_source, "quantization": "uint8 round(255 x)"},
        "feature_extractor": extractor.name, "weights": Path(extractor.weights).name,
        "weights_sha256": extractor.weights_sha256,
        "feature_layers": {m: extractor.layer(m) for m in metrics}, "resize": extractor.resize,
        "statistics": "float64 mean and covariance; tr sqrt(S1 S2) from eigenvalues (torch-fidelity); FID clipped at 0",
        "rng_seed": RNG_SEED, **details,
        "reference_cache": {k: v for k, v in (cache or {}).items() if k != "key"},
        "versions": versions(),
    }


class SampleQuality:
    """Evaluations of one run: the extractor network is built once, the reference features are
    kept per split; generated features live only inside one ``evaluate`` call."""

    def __init__(self, settings: Settings, extractor: Extractor, dataset: str,
                 load_images: Callable[[str], torch.Tensor], device="cpu"):
        self.settings, self.extractor, self.dataset = settings, extractor, dataset
        self.load_images, self.device = load_images, torch.device(device)
        self.net = extractor.build(self.device)
        self._reference: dict[str, tuple[dict, dict]] = {}

    def reference(self, split: str) -> tuple[dict, dict]:
        if split not in self._reference:
            s = self.settings
            self._reference[split] = reference_features(
                self.extractor, self.net, self.dataset, split, s.num_real, lambda: self.load_images(split),
                s.cache_dir, s.batch_size, self.device)
        return self._reference[split]

    def evaluate(self, split: str, model=None, images: torch.Tensor | None = None, source: dict | None = None,
                 rank: int = 0, world_size: int = 1) -> tuple[dict, dict]:
        """(logged scores, protocol) for samples of ``model`` or for uint8 ``images`` (N, C, H, W)."""
        started = time.time()
        metrics = self.settings.feature_metrics
        self.net.to(self.device)
        if images is not None:
            generated = extract(self.net, images, self.settings.batch_size, self.device, self.extractor.channels)
            source = source or {"source": "images"}
        else:
            generated = generated_features(model, self.net, self.extractor, self.settings, self.device, rank, world_size)
            source = {"source": "model.sample", "seed": self.settings.seed, "chunk_size": self.settings.batch_size,
                      "class_balanced_labels": bool(getattr(model, "conditional", False)), "world_size": world_size}
        num_generated = len(next(iter(generated.values())))
        needs_reference = any(m in metrics for m in ("fid", "kid", "prc"))
        reference, cache = self.reference(split) if needs_reference else (None, None)
        scores, details = compute_scores(metrics, generated, reference, self.extractor, self.settings)
        del generated  # nothing of this evaluation outlives it
        record = protocol(metrics, self.extractor, self.settings, self.dataset, split, num_generated,
                          reference["num_images"] if reference else None, source, cache, details)
        record["wall_time_s"] = round(time.time() - started, 2)
        return logged_names(scores, split, self.extractor.suffix), record


def grey_splits(datamodule) -> dict:
    """The datamodule's splits ({split: .images (N, C, H, W) in [0, 1], .labels}) in grey levels: a
    binarized datamodule is reloaded with ``binarize=none`` (samples are compared with real images,
    not with their binarization)."""
    if getattr(datamodule, "binarize", "none") != "none":
        datamodule = type(datamodule)(binarize="none", data_dir=getattr(datamodule, "data_dir", None))
    datamodule.setup()
    return getattr(datamodule, "splits", None) or {}


def split_images(datamodule, split: str) -> torch.Tensor:
    """Float images (N, C, H, W) in [0, 1] of ``split``, grey levels (see ``grey_splits``)."""
    splits = grey_splits(datamodule)
    if split not in splits:
        raise ConfigError(f"the dataset has no {split!r} image split to compare samples with.")
    return splits[split].images


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
        with np.load(path) as data:
            if "images" not in data:
                raise DataError(f"{path} has no 'images' array; write it with dgm-sample or np.savez(images=...).")
            array = data["images"]
    else:
        raise DataError(f"images={path} is neither a folder of images nor an existing .npz file.")
    if array.dtype != np.uint8 or array.ndim not in (3, 4) or len(array) < 2:
        raise DataError(f"{path} must hold at least 2 uint8 images (N, H, W[, C]) in 0..255, got {array.dtype} {array.shape}.")
    images = torch.from_numpy(array.copy())
    return images.unsqueeze(1) if images.dim() == 3 else images.permute(0, 3, 1, 2).contiguous()


def evaluate_for_cli(settings: Settings, datamodule, split: str, device="cpu", model=None,
                     images: torch.Tensor | None = None, source: dict | None = None) -> tuple[dict, dict]:
    """dgm-eval: ({name: score}, {"protocol": ..., "cas": ..., "skipped": ...}) for the samples of
    ``model`` or for uint8 ``images`` (N, C, H, W), against ``split`` of ``datamodule``."""
    scores, record = {}, {}
    dataset = getattr(datamodule, "name", type(datamodule).__name__)
    if settings.feature_metrics:
        extractor = resolve_extractor(settings, dataset)
        if extractor is None:
            record["skipped"] = missing_inception_message(settings)
        else:
            evaluator = SampleQuality(settings, extractor, dataset, lambda s: split_images(datamodule, s), device)
            found, record["protocol"] = evaluator.evaluate(split, model=model, images=images, source=source)
            scores.update(found)
    if "cas" in settings.selected:
        from dgm_lab.metrics.cas import classification_accuracy_score

        if model is None:
            raise ConfigError("metrics=[cas] needs ckpt_path= of a class-conditional model, not images=.")
        splits = grey_splits(datamodule)
        found, record["cas"] = classification_accuracy_score(
            model, (splits["train"].images, splits["train"].labels), (splits[split].images, splits[split].labels),
            num_samples=settings.cas_num_samples, epochs=settings.cas_epochs, seed=settings.seed, split=split)
        scores.update(found)
    return scores, record
