"""Generator and discriminator networks for ``dgm_lab.models.gan.GAN``.

Configs build them as ``_partial_`` factories; the GAN calls them with the shapes and the number
of classes (0 = unconditional) that come from the datamodule:

    generator(latent_dim=..., out_shape=..., num_classes=..., out_activation="tanh" | "none")
    discriminator(in_shape=..., num_classes=...)

Generators map z (B, latent_dim) [+ labels (B,)] to (B, *out_shape): in [-1, 1] with ``tanh``
(images), unbounded with ``none`` (2-D points). Discriminators map (B, *in_shape) [+ labels] to
scores (B,), unbounded (logits for the cross-entropy losses). Class-conditional generators
concatenate a label embedding to z; conditional discriminators use the projection head of
Miyato & Koyama 2018: score = head(phi(x)) + <embed(y), phi(x)>.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dgm_lab.errors import ConfigError
from dgm_lab.models.shapes import as_shape, halving_plan

LEAKY_SLOPE = 0.2  # DCGAN's LeakyReLU slope (Radford et al. 2015)


def output_activation(name: str) -> nn.Module:
    if name not in ("tanh", "none"):
        raise ConfigError(f"generator out_activation must be 'tanh' or 'none', got {name!r}.")
    return nn.Tanh() if name == "tanh" else nn.Identity()


class LabelInput(nn.Module):
    """Concatenates a learned label embedding to z (identity for unconditional models)."""

    def __init__(self, latent_dim: int, num_classes: int, embed_dim: int):
        super().__init__()
        self.embed = nn.Embedding(num_classes, embed_dim) if num_classes else None
        self.out_features = latent_dim + (embed_dim if num_classes else 0)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        if self.embed is None:
            return z
        if labels is None:
            raise ValueError("a class-conditional generator needs labels")
        return torch.cat([z, self.embed(labels)], dim=1)


class ProjectionHead(nn.Module):
    """Score = linear(features) + <embed(y), features> (the projection term only when conditional)."""

    def __init__(self, features: int, num_classes: int):
        super().__init__()
        self.linear = nn.Linear(features, 1)
        self.embed = nn.Embedding(num_classes, features) if num_classes else None

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        score = self.linear(features).squeeze(1)
        if self.embed is not None:
            if labels is None:
                raise ValueError("a class-conditional discriminator needs labels")
            score = score + (self.embed(labels) * features).sum(1)
        return score


class MLPGenerator(nn.Module):
    """Dense ReLU layers from z to ``out_shape`` (images or points)."""

    def __init__(self, latent_dim: int, out_shape, num_classes: int = 0, hidden: list[int] = (256, 256),
                 out_activation: str = "tanh", embed_dim: int = 16, batch_norm: bool = False):
        super().__init__()
        self.out_shape = as_shape(out_shape)
        self.inputs = LabelInput(latent_dim, num_classes, embed_dim)
        layers: list[nn.Module] = []
        width = self.inputs.out_features
        for h in hidden:
            layers += [nn.Linear(width, h), *([nn.BatchNorm1d(h)] if batch_norm else []), nn.ReLU()]
            width = h
        layers += [nn.Linear(width, math.prod(self.out_shape)), output_activation(out_activation)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(self.inputs(z, labels)).view(-1, *self.out_shape)


class MLPDiscriminator(nn.Module):
    """Dense LeakyReLU(0.2) layers from a flattened input to one score."""

    def __init__(self, in_shape, num_classes: int = 0, hidden: list[int] = (256, 256)):
        super().__init__()
        layers: list[nn.Module] = []
        width = math.prod(as_shape(in_shape))
        for h in hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(LEAKY_SLOPE)]
            width = h
        self.features = nn.Sequential(*layers)
        self.head = ProjectionHead(width, num_classes)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.features(x.flatten(1)), labels)


def conv_plan(shape) -> tuple[int, int, int, int]:
    """``halving_plan`` of the image shape (C, start H, start W, number of stride-2 stages), with the
    advice for 2-D points, which these networks cannot take."""
    return halving_plan(shape, hint="; use model=gan for vectors")


class DCGANGenerator(nn.Module):
    """Radford et al. 2015: project z to a (channels * 2^(n-1), h0, w0) map, then n stride-2
    transposed convolutions (4x4 kernels), batch norm and ReLU everywhere except the tanh output."""

    def __init__(self, latent_dim: int, out_shape, num_classes: int = 0, channels: int = 64,
                 out_activation: str = "tanh", embed_dim: int = 16):
        super().__init__()
        c_out, h0, w0, stages = conv_plan(out_shape)
        width = channels * 2 ** (stages - 1)
        self.start = (width, h0, w0)
        self.inputs = LabelInput(latent_dim, num_classes, embed_dim)
        self.project = nn.Linear(self.inputs.out_features, width * h0 * w0, bias=False)
        layers: list[nn.Module] = [nn.BatchNorm2d(width), nn.ReLU()]
        for _ in range(stages - 1):
            layers += [nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(width // 2), nn.ReLU()]
            width //= 2
        layers += [nn.ConvTranspose2d(width, c_out, 4, 2, 1), output_activation(out_activation)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(self.project(self.inputs(z, labels)).view(-1, *self.start))


class DCGANDiscriminator(nn.Module):
    """Mirror of the generator: n stride-2 convolutions with LeakyReLU(0.2), no normalization on
    the input layer, then a linear (projection) head. ``norm``: ``batch`` (Radford et al.) or
    ``none`` (required by a gradient penalty, which is per example; Gulrajani et al. 2017)."""

    def __init__(self, in_shape, num_classes: int = 0, channels: int = 64, norm: str = "batch"):
        super().__init__()
        if norm not in ("batch", "none"):
            raise ConfigError(f"discriminator norm must be 'batch' or 'none', got {norm!r}.")
        c_in, h0, w0, stages = conv_plan(in_shape)
        layers: list[nn.Module] = [nn.Conv2d(c_in, channels, 4, 2, 1), nn.LeakyReLU(LEAKY_SLOPE)]
        width = channels
        for _ in range(stages - 1):
            layers += [nn.Conv2d(width, width * 2, 4, 2, 1, bias=norm == "none")]
            layers += [nn.BatchNorm2d(width * 2)] if norm == "batch" else []
            layers += [nn.LeakyReLU(LEAKY_SLOPE)]
            width *= 2
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.head = ProjectionHead(width * h0 * w0, num_classes)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.features(x), labels)


def add_spectral_norm(module: nn.Module) -> nn.Module:
    """Spectral normalization (Miyato et al. 2018) on every linear, convolution and embedding weight."""
    for child in list(module.modules()):
        if isinstance(child, nn.Linear | nn.Conv2d | nn.ConvTranspose2d | nn.Embedding):
            nn.utils.parametrizations.spectral_norm(child)
    return module


def has_batch_norm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())
