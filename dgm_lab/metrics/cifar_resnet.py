"""A small ResNet classifier of 32x32 RGB images, registered with torch-fidelity as the offline
feature extractor of CIFAR-10, as ``dgm_lab.metrics.lenet`` is for MNIST.

Registered name: ``cifar-resnet`` (weights shipped in ``dgm_lab/metrics/weights/cifar_resnet_cifar10_jpeg.pt``,
trained on the CIFAR-10 (JPEG copy) train split by ``python -m dgm_lab.metrics.train_cifar_resnet``; test
accuracy and file hash in ``weights/ACCURACY.json``). Scores from it are logged as ``*_cifar_resnet``
(``val/fid_cifar_resnet``): they are not Inception FIDs and must never be compared with published FIDs.

Input convention (torch-fidelity's, asserted): ``torch.uint8`` images (N, C, H, W), values 0..255,
C = 3 (RGB) or 1 (grey, replicated to RGB). Images that are not 32x32 are resized to 32x32
(bilinear, antialiased). Features: ``features`` (N, 256), the globally max-pooled last residual
stage (FID, KID, precision/recall); ``logits`` (N, 10) (IS). Both float64, as the LeNet's.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

from dgm_lab.errors import DataError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
NAME = "cifar-resnet"
WEIGHTS = WEIGHTS_DIR / "cifar_resnet_cifar10_jpeg.pt"
IMAGE_SIZE = 32
WIDTHS = (32, 64, 128, 256)
FEATURE_DIM = WIDTHS[-1]
FORMAT = "dgm_lab.cifar_resnet/1"  # in every weights file, so a foreign state dict is refused by name
RESIZE = "none for 32x32 inputs, else bilinear (antialiased) to 32x32; grey replicated to RGB"
# Per-channel statistics of the CIFAR-10 train images: fixed constants, not fitted, so the
# normalization is part of the architecture and identical for every weights file.
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
LOGIT_SCALE = 0.125  # a small output scale keeps the early softmax soft, which trains faster at a high rate


def conv_bn_relu(channels_in: int, channels_out: int) -> list[nn.Module]:
    return [nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False), nn.BatchNorm2d(channels_out),
            nn.ReLU(inplace=True)]


class Residual(nn.Module):
    """x + (conv-BN-ReLU twice)(x), at constant width and resolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(*conv_bn_relu(channels, channels), *conv_bn_relu(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class CifarResNet(nn.Module):
    """The 9-layer ResNet of fast CIFAR-10 training at half width (``WIDTHS``): a stem, three
    downsampling stages (conv-BN-ReLU-maxpool, 32 -> 16 -> 8 -> 4), residual blocks after the
    first and last, a global max pool and one linear layer. 1.65 M parameters.

    ``forward`` takes float images (N, 3, 32, 32) in [0, 1] and returns (features (N, 256), logits (N, 10)).
    """

    def __init__(self, num_classes: int = 10, widths: tuple[int, int, int, int] = WIDTHS):
        super().__init__()
        self.widths = tuple(int(w) for w in widths)
        stem, first, second, third = self.widths
        self.body = nn.Sequential(
            *conv_bn_relu(3, stem),
            *conv_bn_relu(stem, first), nn.MaxPool2d(2), Residual(first),
            *conv_bn_relu(first, second), nn.MaxPool2d(2),
            *conv_bn_relu(second, third), nn.MaxPool2d(2), Residual(third),
            nn.AdaptiveMaxPool2d(1), nn.Flatten(),
        )
        self.classifier = nn.Linear(third, num_classes, bias=False)
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body((x - self.mean) / self.std)
        return features, self.classifier(features) * LOGIT_SCALE


def uint8_to_input(x: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) 0..255 -> float (N, 3, 32, 32) in [0, 1], asserting the convention."""
    if not (torch.is_tensor(x) and x.dtype == torch.uint8 and x.dim() == 4 and x.shape[1] in (1, 3)):
        raise ValueError(f"the CIFAR ResNet feature extractor expects uint8 images (N, 1|3, H, W) in 0..255, got "
                         f"{getattr(x, 'dtype', type(x))} {tuple(getattr(x, 'shape', ()))}")
    x = x.float().div(255)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
        x = F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", antialias=True,
                          align_corners=False).clamp(0, 1)
    return x


def weights_record(net: CifarResNet, dataset: str) -> dict:
    """What a weights file holds: half-precision tensors (half the bytes; the features move by
    less than float16's resolution of the activations) and the facts needed to rebuild the net."""
    state = {key: value.half() if value.is_floating_point() else value for key, value in net.state_dict().items()}
    return {"format": FORMAT, "state_dict": state, "num_classes": net.classifier.out_features,
            "widths": list(net.widths), "dataset": dataset}


def load_cifar_resnet(path: str | Path) -> CifarResNet:
    """A float32 CifarResNet in eval mode with the weights in ``path`` (``weights_record``'s dict)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"CIFAR ResNet weights {path} do not exist; reinstall dgm-lab or train them with "
                        "`python -m dgm_lab.metrics.train_cifar_resnet`.")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved.get("format") != FORMAT:
            raise ValueError(saved.get("format"))
        net = CifarResNet(num_classes=int(saved["num_classes"]), widths=tuple(saved["widths"]))
        net.load_state_dict({key: value.float() if value.is_floating_point() else value
                             for key, value in saved["state_dict"].items()})
    except Exception as error:  # any unreadable or foreign file means the same to the user
        raise DataError(f"{path} is not a CIFAR ResNet weights file written by dgm_lab.metrics.train_cifar_resnet "
                        f"({type(error).__name__}); pass metrics.cifar_resnet_weights=null for the shipped one.") from None
    return net.eval().requires_grad_(False)


class FeatureExtractorCifarResNet(FeatureExtractorBase):
    """torch-fidelity feature extractor around :class:`CifarResNet` (see the module docstring)."""

    def __init__(self, name: str, features_list, feature_extractor_weights_path: str | None = None, **kwargs):
        super().__init__(name, features_list)
        self.net = load_cifar_resnet(feature_extractor_weights_path or WEIGHTS)

    def forward(self, x: torch.Tensor):
        features, logits = self.net(uint8_to_input(x))
        out = {"features": features.double(), "logits": logits.double()}
        return tuple(out[name] for name in self.features_list)

    @staticmethod
    def get_provided_features_list():
        return "features", "logits"

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits", "fid": "features", "kid": "features", "prc": "features"}[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.uint8)


if NAME not in FEATURE_EXTRACTORS_REGISTRY:  # importing this module twice must not re-register (the registry refuses)
    register_feature_extractor(NAME, FeatureExtractorCifarResNet)
