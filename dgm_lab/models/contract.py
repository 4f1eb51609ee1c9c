"""What a generative model offers to callbacks, metrics and the entry points.

Every model is a ``GenerativeModule`` and samples; the optional capabilities below are
declared by implementing the method (checked with ``isinstance``), never probed by name.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class GenerativeModel(Protocol):
    """``data_shape`` (C, H, W) or (D,); ``num_classes`` of the data; ``conditional``: ``sample``
    honours ``labels`` (class-conditional models)."""

    data_shape: tuple[int, ...]
    num_classes: int
    conditional: bool

    def sample(self, num_samples: int, generator: torch.Generator | None = None,
               labels: torch.Tensor | None = None) -> torch.Tensor:
        """``num_samples`` images (N, C, H, W) in [0, 1], or points (N, D) in data units."""


@runtime_checkable
class Reconstructs(Protocol):
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstructions of images x (N, C, H, W) in [0, 1], same shape and range."""


@runtime_checkable
class Interpolates(Protocol):
    def interpolate(self, x_start: torch.Tensor, x_end: torch.Tensor, steps: int = 10) -> torch.Tensor:
        """``steps`` images between each pair (x_start[i], x_end[i]): (pairs * steps, C, H, W)."""


@runtime_checkable
class GibbsSampler(Protocol):
    """Models that sample by running a Markov chain; ``dgm-sample gibbs_steps=N`` sets its length."""

    sample_gibbs_steps: int


@runtime_checkable
class HasWeightFilters(Protocol):
    def weight_filters(self) -> torch.Tensor:
        """First-layer filters as images (H, C, h, w), each scaled to [0, 1]."""
