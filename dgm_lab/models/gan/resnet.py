"""ResNet generator and discriminator for 32x32 images (CIFAR-10), as described in the appendices of
Miyato et al. 2018 (SNGAN) and Gulrajani et al. 2017 (WGAN-GP, CIFAR-10 ResNet), sized
from the image: ``conv_plan`` gives the 4x4 start and the number of 2x stages (32 -> 3, 16 -> 2, 8 -> 1).

Generator: z (B, latent_dim) -> linear -> (channels, 4, 4) -> one up-sampling residual block per
stage -> BN, ReLU, 3x3 conv, output activation (tanh: images in [-1, 1]). A block is
BN, ReLU, 2x nearest up-sampling, 3x3 conv, BN, ReLU, 3x3 conv, plus the shortcut up-sampling and
1x1 conv. Class-conditional: the batch norms inside the blocks are conditional (a per-class gain and bias on
unit-free batch statistics; Miyato & Koyama 2018, de Vries et al. 2017).

Discriminator: the optimized first block (3x3 conv, ReLU, 3x3 conv, 2x2 mean pool; shortcut mean
pool then 1x1 conv), down-sampling residual blocks (ReLU, 3x3 conv, ReLU, 3x3 conv, 2x2 mean pool;
shortcut 1x1 conv then mean pool), plain residual blocks up to ``num_blocks``, ReLU, global sum
(SNGAN) or mean (WGAN-GP) pooling over space and a linear head, with the projection term when
conditional. At 32x32 the blocks output 16, 8, 8 and 8 pixels a side: one down-sampling block
fewer than the generator's up-sampling stages, as in both papers. No batch norm: neither paper's D
has one, and it would mix the examples that a gradient penalty treats one by one. ``norm=layer``
adds a layer norm over (C, H, W) before each ReLU, the critic normalization WGAN-GP recommends.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dgm_lab.errors import ConfigError
from dgm_lab.models.gan.networks import ProjectionHead, conv_plan, output_activation


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm whose gain and bias are looked up by class (plain learned ones when num_classes=0)."""

    def __init__(self, features: int, num_classes: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(features, affine=num_classes == 0)
        self.class_gain = nn.Embedding(num_classes, features) if num_classes else None
        self.class_bias = nn.Embedding(num_classes, features) if num_classes else None
        if num_classes:  # start as the identity map of plain batch norm
            nn.init.ones_(self.class_gain.weight)
            nn.init.zeros_(self.class_bias.weight)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        out = self.norm(x)
        if self.class_gain is None:
            return out
        if labels is None:
            raise ValueError("a class-conditional generator needs labels")
        return out * self.class_gain(labels)[:, :, None, None] + self.class_bias(labels)[:, :, None, None]


class UpBlock(nn.Module):
    """Residual block doubling H and W: (B, c_in, h, w) -> (B, c_out, 2h, 2w)."""

    def __init__(self, c_in: int, c_out: int, num_classes: int):
        super().__init__()
        self.norm1, self.norm2 = ConditionalBatchNorm2d(c_in, num_classes), ConditionalBatchNorm2d(c_out, num_classes)
        self.conv1, self.conv2 = nn.Conv2d(c_in, c_out, 3, padding=1), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        h = F.interpolate(F.relu(self.norm1(x, labels)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.norm2(self.conv1(h), labels)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2, mode="nearest"))


class ResNetGenerator(nn.Module):
    """z (B, latent_dim) [+ labels (B,)] -> images (B, *out_shape), in [-1, 1] with ``tanh``.
    ``channels``: width of every block (256 in SNGAN, 128 in WGAN-GP)."""

    def __init__(self, latent_dim: int, out_shape, num_classes: int = 0, channels: int = 256,
                 out_activation: str = "tanh"):
        super().__init__()
        c_out, h0, w0, stages = conv_plan(out_shape)
        self.start = (channels, h0, w0)
        self.project = nn.Linear(latent_dim, channels * h0 * w0)
        self.blocks = nn.ModuleList(UpBlock(channels, channels, num_classes) for _ in range(stages))
        self.norm = nn.BatchNorm2d(channels)
        self.out = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, c_out, 3, padding=1), output_activation(out_activation))

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.project(z).view(-1, *self.start)
        for block in self.blocks:
            h = block(h, labels)
        return self.out(self.norm(h))


def _critic_norm(kind: str, channels: int) -> nn.Module:
    """``none``, or ``layer``: layer norm over (C, H, W) of each example (GroupNorm with one group)."""
    return nn.GroupNorm(1, channels) if kind == "layer" else nn.Identity()


class DownBlock(nn.Module):
    """Residual block of the discriminator: (B, c_in, h, w) -> (B, c_out, h/2, w/2) when ``down``,
    else same size. ``first``: the optimized first block, which sees the image (no ReLU before its
    first conv) and pools its shortcut before the 1x1 conv."""

    def __init__(self, c_in: int, c_out: int, down: bool, first: bool = False, norm: str = "none"):
        super().__init__()
        self.down, self.first = down, first
        self.norm1 = nn.Identity() if first else _critic_norm(norm, c_in)
        self.norm2 = _critic_norm(norm, c_out)
        self.conv1, self.conv2 = nn.Conv2d(c_in, c_out, 3, padding=1), nn.Conv2d(c_out, c_out, 3, padding=1)
        # SNGAN's blocks without a change of width or size keep the identity shortcut
        self.shortcut = nn.Conv2d(c_in, c_out, 1) if (down or c_in != c_out) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(x if self.first else F.relu(self.norm1(x)))
        h = self.conv2(F.relu(self.norm2(h)))
        if self.down:
            h = F.avg_pool2d(h, 2)
            skip = self.shortcut(F.avg_pool2d(x, 2)) if self.first else F.avg_pool2d(self.shortcut(x), 2)
        else:
            skip = self.shortcut(x)
        return h + skip


class ResNetDiscriminator(nn.Module):
    """Images (B, *in_shape) [+ labels (B,)] -> scores (B,), unbounded.

    Args:
        channels: width of every block (128 in both papers).
        num_blocks: residual blocks in all, the optimized first one included (4 in both papers);
            at least the number of down-sampling blocks (one fewer than the generator's stages, at least 1).
        norm: ``none`` or ``layer`` (no batch norm: see the module docstring).
        pooling: ``sum`` (SNGAN) or ``mean`` (WGAN-GP's code) over the last feature map.
    """

    def __init__(self, in_shape, num_classes: int = 0, channels: int = 128, num_blocks: int = 4,
                 norm: str = "none", pooling: str = "sum"):
        super().__init__()
        if norm not in ("none", "layer"):
            raise ConfigError(f"model.discriminator.norm must be 'none' or 'layer' for ResNet critics, got {norm!r}.")
        if pooling not in ("sum", "mean"):
            raise ConfigError(f"model.discriminator.pooling must be 'sum' or 'mean', got {pooling!r}.")
        c_in, _, _, stages = conv_plan(in_shape)
        downs = max(1, stages - 1)
        if num_blocks < downs:
            raise ConfigError(f"model.discriminator.num_blocks must be at least {downs} for "
                              f"{in_shape[1]}x{in_shape[2]} images, got {num_blocks}.")
        blocks = [DownBlock(c_in, channels, down=True, first=True)]
        blocks += [DownBlock(channels, channels, down=i < downs, norm=norm) for i in range(1, num_blocks)]
        self.blocks = nn.Sequential(*blocks)
        self.final_norm = _critic_norm(norm, channels)
        self.pooling = pooling
        self.head = ProjectionHead(channels, num_classes)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = F.relu(self.final_norm(self.blocks(x)))
        features = h.sum(dim=(2, 3)) if self.pooling == "sum" else h.mean(dim=(2, 3))
        return self.head(features, labels)
