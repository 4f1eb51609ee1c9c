"""Generic encoder and decoder networks (any model family may use them). Configs build them as
``_partial_`` factories; the model calls them with the shapes it needs, which come from the
datamodule.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dgm_lab.errors import ConfigError
from dgm_lab.models.shapes import as_shape, image_shape

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "leaky_relu": nn.LeakyReLU, "silu": nn.SiLU,
               "softplus": nn.Softplus}


def activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ConfigError(f"activation {name!r} is not one of {', '.join(ACTIVATIONS)}.")
    return ACTIVATIONS[name]()


class MLP(nn.Module):
    """Maps a tensor of shape ``(B, *in_shape)`` to ``(B, *out_shape)`` through dense layers."""

    def __init__(self, in_shape, out_shape, hidden: list[int] = (200, 200), act: str = "tanh"):
        super().__init__()
        in_shape, out_shape = as_shape(in_shape), as_shape(out_shape)
        if any(h < 1 for h in hidden):
            raise ConfigError(f"hidden layer sizes must be positive, got {list(hidden)}.")
        self.out_shape = out_shape
        sizes = [math.prod(in_shape), *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Linear(a, b), activation(act)]
        layers.append(nn.Linear(sizes[-1], math.prod(out_shape)))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1)).view(-1, *self.out_shape)


class ConvEncoder(nn.Module):
    """Strided convolutions (each halves H and W), then a dense layer to ``out_features``.

    ``in_shape`` is (C, H, W) with H and W divisible by 2 ** len(channels).
    """

    def __init__(self, in_shape, out_shape, channels: list[int] = (32, 64), hidden: int = 256,
                 act: str = "relu"):
        super().__init__()
        c, h, w = _image_shape(in_shape, len(channels))
        layers: list[nn.Module] = []
        for out_c in channels:
            layers += [nn.Conv2d(c, out_c, 4, stride=2, padding=1), activation(act)]
            c = out_c
        factor = 2 ** len(channels)
        self.out_shape = as_shape(out_shape)
        self.net = nn.Sequential(
            *layers, nn.Flatten(), nn.Linear(c * (h // factor) * (w // factor), hidden), activation(act),
            nn.Linear(hidden, math.prod(self.out_shape)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).view(-1, *self.out_shape)


class ConvDecoder(nn.Module):
    """Mirror of ``ConvEncoder``: dense layer to a small feature map, then transposed convolutions
    (each doubles H and W) to ``out_shape`` = (C_out, H, W)."""

    def __init__(self, in_shape, out_shape, channels: list[int] = (64, 32), hidden: int = 256,
                 act: str = "relu"):
        super().__init__()
        c_out, h, w = _image_shape(out_shape, len(channels))
        factor = 2 ** len(channels)
        self.start = (channels[0], h // factor, w // factor)
        layers: list[nn.Module] = []
        for c_in, c_next in zip(channels, [*channels[1:], c_out], strict=True):
            layers += [activation(act), nn.ConvTranspose2d(c_in, c_next, 4, stride=2, padding=1)]
        self.dense = nn.Sequential(
            nn.Linear(math.prod(as_shape(in_shape)), hidden), activation(act), nn.Linear(hidden, math.prod(self.start)),
        )
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.dense(z.flatten(1)).view(-1, *self.start))


def _image_shape(shape, depth: int) -> tuple[int, int, int]:
    c, h, w = image_shape(shape)
    factor = 2 ** depth
    if h % factor or w % factor:
        raise ConfigError(
            f"image size {h}x{w} is not divisible by {factor} = 2^(number of conv layers); "
            "use fewer channels entries or another dataset."
        )
    return c, h, w
