"""Feature extractors: which network scores a dataset, and where its weights come from.

``resolve_extractor`` runs before any training, so missing or foreign weights stop a run in one
sentence instead of after hours. The shipped extractors need no download: the LeNets
(``dgm_lab.metrics.lenet``) for MNIST-like digits and clothes, the CIFAR ResNet
(``dgm_lab.metrics.cifar_resnet``) for CIFAR-10 and other 32x32 RGB images; ``metrics.feature_extractor=auto``
picks one by dataset (``SHIPPED_BY_DATASET``, then ``SHIPPED_BY_SHAPE``). InceptionV3 weights come from
``metrics.inception_weights``, the torch hub cache, or a download.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import socket
from dataclasses import dataclass
from pathlib import Path

import torch
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
from torch_fidelity.utils import create_feature_extractor

from dgm_lab.errors import ConfigError, DataError
from dgm_lab.metrics import cifar_resnet, lenet
from dgm_lab.metrics.settings import AUTO, INCEPTION, LENET, Settings

log = logging.getLogger("dgm_lab")

# torch-fidelity's metrics: each names a default layer of every extractor (LeNet: features or logits)
TF_METRICS = ("fid", "isc", "kid", "prc")
INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"  # pytorch-fid's name for the same TF port
INCEPTION_FILES = (INCEPTION_FILE, Path(URL_INCEPTION_V3).name)  # both load into torch-fidelity's net
PYTORCH_FID_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{INCEPTION_FILE}"
INCEPTION_RESIZE = "torch-fidelity's TF1-compatible bilinear resize to 299x299; grey replicated to RGB"
# The shipped LeNet that metrics.feature_extractor=lenet picks, by dataset name (InMemoryImageData.name).
# Other datasets must name their extractor: a LeNet of other images would score them without a warning.
LENET_BY_DATASET = {"mnist": "lenet-mnist", "mnist_5k": "lenet-mnist", "digits": "lenet-mnist",
                    "fashion_mnist": "lenet-fashion-mnist"}
# What metrics.feature_extractor=auto picks: by dataset name first, then, for data of no registered
# name (a user's image folder, dgm-sample's npz read back), by image shape (C, H, W). A 32x32 RGB
# folder is scored by the CIFAR-10 classifier: its features describe natural images at that size.
SHIPPED_BY_DATASET = {**LENET_BY_DATASET, "cifar10": cifar_resnet.NAME, "cifar10_jpeg": cifar_resnet.NAME}
SHIPPED_BY_SHAPE = {(3, cifar_resnet.IMAGE_SIZE, cifar_resnet.IMAGE_SIZE): cifar_resnet.NAME}
SHIPPED = (*lenet.LENETS, cifar_resnet.NAME)


@dataclass(frozen=True)
class Extractor:
    """A resolved torch-fidelity feature extractor: registry name, weights file and its hash."""

    name: str
    weights: str
    weights_sha256: str
    key_name: str  # its part of logged keys (specs.EXTRACTOR_SUFFIXES): "lenet" -> val/fid_lenet; "" for InceptionV3
    resize: str
    channels: int  # channels the network takes (grey is replicated for InceptionV3)

    def layer(self, tf_metric: str) -> str:
        """The extractor's default layer for torch-fidelity's metric ``tf_metric`` (``TF_METRICS``)."""
        return FEATURE_EXTRACTORS_REGISTRY[self.name].get_default_feature_layer_for_metric(tf_metric)

    @property
    def reference_layers(self) -> list[str]:
        """Layers of torch-fidelity's two-sample metrics (FID, KID, PR): what the reference cache holds."""
        return sorted({self.layer(m) for m in ("fid", "kid", "prc")})

    def build(self, device) -> torch.nn.Module:
        layers = sorted({self.layer(m) for m in TF_METRICS})
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


def choices_sentence() -> str:
    """The end of every no-extractor message: what the user can set instead."""
    return (f"set metrics.feature_extractor={'|'.join(SHIPPED)}, or {INCEPTION} with "
            f"metrics.inception_weights=<path to {INCEPTION_FILE}>.")


def lenet_for(dataset: str) -> str:
    """The registry name of the shipped LeNet for ``dataset`` (``LENET_BY_DATASET``)."""
    if dataset not in LENET_BY_DATASET:
        raise ConfigError(f"metrics.feature_extractor=lenet has no LeNet registered for the dataset {dataset!r} "
                          f"(only {', '.join(LENET_BY_DATASET)}); {choices_sentence()}")
    return LENET_BY_DATASET[dataset]


def shipped_for(dataset: str, image_shape: tuple[int, ...] | None = None) -> str:
    """The registry name of the shipped extractor for ``dataset`` with images (C, H, W) ``image_shape``."""
    if dataset in SHIPPED_BY_DATASET:
        return SHIPPED_BY_DATASET[dataset]
    shape = tuple(image_shape) if image_shape is not None else None
    if shape in SHIPPED_BY_SHAPE:
        log.info("scoring %s %s images with %s, the shipped CIFAR-10 classifier of 32x32 RGB images",
                 dataset, "x".join(map(str, shape)), SHIPPED_BY_SHAPE[shape])
        return SHIPPED_BY_SHAPE[shape]
    shown = f" of {'x'.join(map(str, shape))} images" if shape else ""
    raise ConfigError(f"no shipped feature extractor is registered for the dataset {dataset!r}{shown} (LeNets: "
                      f"{', '.join(LENET_BY_DATASET)}; CIFAR ResNet: cifar10, cifar10_jpeg and any 3x32x32 images); "
                      f"{choices_sentence()}")


def resolve_extractor(settings: Settings, dataset: str, image_shape: tuple[int, ...] | None = None) -> Extractor | None:
    """The extractor for ``settings`` on ``dataset`` (images (C, H, W) ``image_shape``, when known);
    None when Inception weights are missing and ``on_missing_weights=skip`` (a warning is logged).
    Raises DataError (weights) or ConfigError (a dataset with no shipped extractor) otherwise,
    before any training."""
    chosen = settings.feature_extractor
    if chosen == INCEPTION:
        return _inception(settings)
    if chosen == AUTO:
        name = shipped_for(dataset, image_shape)
    elif chosen == LENET:
        name = lenet_for(dataset)
    else:
        name = chosen
    if name == cifar_resnet.NAME:
        path = _weights_path(settings.cifar_resnet_weights, cifar_resnet.WEIGHTS)
        cifar_resnet.load_cifar_resnet(path)  # a missing or foreign file fails here, in one sentence
        return Extractor(name, str(path), file_sha256(path), "cifar_resnet", cifar_resnet.RESIZE, 3)
    path = _weights_path(settings.lenet_weights, lenet.LENETS[name])
    lenet.load_lenet(path)
    return Extractor(name, str(path), file_sha256(path), "lenet", lenet.RESIZE, 1)


def _weights_path(configured: str | None, shipped: Path) -> Path:
    return Path(configured).expanduser().resolve() if configured else shipped


def _inception(settings: Settings) -> Extractor | None:
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
            "or use metrics.feature_extractor=auto (the shipped extractor of the dataset) or metrics.on_missing_weights=skip.")


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
