"""A LeNet-style classifier of 28x28 digits / clothes, registered with torch-fidelity as an
offline feature extractor, so that FID, IS, KID and precision/recall need no download.

Registered names: ``lenet-mnist`` and ``lenet-fashion-mnist`` (weights shipped in
``dgm_lab/metrics/weights/``, trained by ``python -m dgm_lab.metrics.train_lenet``; test
accuracy in ``weights/ACCURACY.json``). Scores from it are logged as ``*_lenet`` (``val/fid_lenet``):
they are not Inception FIDs and must never be compared with published FIDs.

Input convention (the same as torch-fidelity's InceptionV3, asserted): ``torch.uint8`` images
(N, C, H, W), values 0..255, C = 1 (grey) or 3 (RGB, e.g. PNG folders read by torch-fidelity;
averaged to grey). Images that are not 28x28 are resized to 28x28 (bilinear, antialiased).
Features: ``features`` (N, 128), the penultimate ReLU layer (FID, KID); ``preactivations``
(N, 128), the same layer before its ReLU (precision/recall); ``logits`` (N, 10), class logits (IS).

Why precision/recall read the pre-activations: after the ReLU about 70% of the units are 0 for
any input, and images the network has no detector for (uniform noise, CIFAR-10 photographs)
switch nearly all of them off, so they collapse to a tight cluster near the origin (feature norm
about 4 against 39 for digits). A few faint real digits also sit near the origin, and their
k-nearest-neighbour balls are wide (the real manifold is sparse there), so with the ReLU features
noise lands inside the "real manifold" and gets precision 0.76 (k=3) to 1.0 (k=5), with recall 0.
Before the ReLU the off units keep how far off they are, the two clusters separate, and noise
and CIFAR-10 airplanes get precision 0.00-0.01 while held-out digits keep about 0.9
(``tests/test_everyday.py::test_lenet_precision_is_low_for_noise_and_foreign_images``). The input
order was right all along: torch-fidelity's ``prc_features_to_metric(features_1, features_2)``
takes the generated features first (its "input1") and the real ones second. Both are returned as float64 so that torch-fidelity's own
statistics (``np.mean``/``np.cov``) run in float64 even when it is called directly.
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
IMAGE_SIZE = 28
FEATURE_DIM = 128
# Registry name -> shipped weights file.
LENETS = {
    "lenet-mnist": WEIGHTS_DIR / "lenet_mnist.pt",
    "lenet-fashion-mnist": WEIGHTS_DIR / "lenet_fashion_mnist.pt",
}
RESIZE = "none for 28x28 inputs, else bilinear (antialiased) to 28x28; RGB averaged to grey"


class LeNet(nn.Module):
    """conv5x5(20) - pool - conv5x5(50) - pool - fc(128) - fc(num_classes), ReLU (Caffe's LeNet).

    ``forward`` takes float images (N, 1, 28, 28) in [0, 1] and returns (features (N, 128), logits).
    """

    def __init__(self, num_classes: int = 10):
        super().__init__()
        # the penultimate layer's ReLU is applied in ``layers`` (its input is a feature layer too);
        # parameter names (body.0, body.3, body.7, classifier) are those of the shipped weights
        self.body = nn.Sequential(
            nn.Conv2d(1, 20, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(20, 50, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(50 * 4 * 4, FEATURE_DIM),
        )
        self.dropout = nn.Dropout(0.3)  # training only; features are read before it
        self.classifier = nn.Linear(FEATURE_DIM, num_classes)

    def layers(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(pre-activations (N, 128), features = their ReLU (N, 128), logits (N, classes))."""
        pre = self.body((x - 0.5) / 0.5)
        features = torch.relu(pre)
        return pre, features, self.classifier(self.dropout(features))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, features, logits = self.layers(x)
        return features, logits


def uint8_to_input(x: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) 0..255 -> float (N, 1, 28, 28) in [0, 1], asserting the convention."""
    if not (torch.is_tensor(x) and x.dtype == torch.uint8 and x.dim() == 4 and x.shape[1] in (1, 3)):
        raise ValueError(f"LeNet feature extractor expects uint8 images (N, 1|3, H, W) in 0..255, got "
                         f"{getattr(x, 'dtype', type(x))} {tuple(getattr(x, 'shape', ()))}")
    x = x.float().div(255)
    if x.shape[1] == 3:
        x = x.mean(dim=1, keepdim=True)
    if x.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
        x = F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", antialias=True,
                          align_corners=False).clamp(0, 1)
    return x


def load_lenet(path: str | Path) -> LeNet:
    """A LeNet in eval mode with the weights in ``path`` (a dict holding ``state_dict``)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"LeNet weights {path} do not exist; reinstall dgm-lab or train them with "
                        "`python -m dgm_lab.metrics.train_lenet --data mnist`.")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        net = LeNet(num_classes=int(saved.get("num_classes", 10)))
        net.load_state_dict(saved["state_dict"])
    except Exception as error:  # any unreadable or foreign file means the same to the user
        raise DataError(f"{path} is not a LeNet weights file written by dgm_lab.metrics.train_lenet "
                        f"({type(error).__name__}); pass metrics.lenet_weights=null for the shipped one.") from None
    return net.eval().requires_grad_(False)


class FeatureExtractorLeNet(FeatureExtractorBase):
    """torch-fidelity feature extractor around :class:`LeNet` (see the module docstring)."""

    def __init__(self, name: str, features_list, feature_extractor_weights_path: str | None = None, **kwargs):
        super().__init__(name, features_list)
        self.net = load_lenet(feature_extractor_weights_path or LENETS[name])

    def forward(self, x: torch.Tensor):
        pre, features, logits = self.net.layers(uint8_to_input(x))
        out = {"features": features.double(), "preactivations": pre.double(), "logits": logits.double()}
        return tuple(out[name] for name in self.features_list)

    @staticmethod
    def get_provided_features_list():
        return "features", "preactivations", "logits"

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits", "fid": "features", "kid": "features", "prc": "preactivations"}[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 1, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.uint8)


for _name in LENETS:  # importing this module twice must not re-register (the registry refuses)
    if _name not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(_name, FeatureExtractorLeNet)
