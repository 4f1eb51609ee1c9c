"""Deeper convolutional encoder and decoder for natural images (32x32x3 the main case), sized from
the image: one stage per halving of H and W down to 4x4 (32 -> 3 stages, 16 -> 2, 8 -> 1).

Each encoder stage is a 3x3 convolution and a 4x4 stride-2 convolution (each with its activation),
widths ``channels * 2^i``; then a dense layer to the output. The decoder mirrors it: a dense layer
to a (channels * 2^(n-1), 4, 4) map, per stage a 4x4 stride-2 transposed convolution and a 3x3
convolution, and a last 3x3 convolution to the output channels (likelihood parameters, unbounded).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dgm_lab.models.networks import activation
from dgm_lab.models.shapes import as_shape, halving_plan


class DeepConvEncoder(nn.Module):
    """Images (B, C, H, W) -> (B, *out_shape); ``channels``: width of the first stage."""

    def __init__(self, in_shape, out_shape, channels: int = 64, hidden: int = 512, act: str = "relu"):
        super().__init__()
        c, h, w, stages = halving_plan(in_shape)
        layers: list[nn.Module] = []
        for i in range(stages):
            width = channels * 2 ** i
            layers += [nn.Conv2d(c, width, 3, padding=1), activation(act),
                       nn.Conv2d(width, width, 4, stride=2, padding=1), activation(act)]
            c = width
        self.out_shape = as_shape(out_shape)
        self.net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(c * h * w, hidden), activation(act),
                                 nn.Linear(hidden, math.prod(self.out_shape)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).view(-1, *self.out_shape)


class DeepConvDecoder(nn.Module):
    """z (B, *in_shape) -> (B, C_out, H, W) with ``out_shape`` = (C_out, H, W); ``channels``:
    width of the last stage (the first is ``channels * 2^(n-1)``)."""

    def __init__(self, in_shape, out_shape, channels: int = 64, hidden: int = 512, act: str = "relu"):
        super().__init__()
        c_out, h, w, stages = halving_plan(out_shape)
        width = channels * 2 ** (stages - 1)
        self.start = (width, h, w)
        self.dense = nn.Sequential(nn.Linear(math.prod(as_shape(in_shape)), hidden), activation(act),
                                   nn.Linear(hidden, math.prod(self.start)), activation(act))
        layers: list[nn.Module] = []
        for i in reversed(range(stages)):
            out = channels * 2 ** max(i - 1, 0)
            layers += [nn.ConvTranspose2d(width, out, 4, stride=2, padding=1), activation(act),
                       nn.Conv2d(out, out, 3, padding=1), activation(act)]
            width = out
        self.net = nn.Sequential(*layers, nn.Conv2d(width, c_out, 3, padding=1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.dense(z.flatten(1)).view(-1, *self.start))
