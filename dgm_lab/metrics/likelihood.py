"""Likelihood metrics. All values are in nats per example unless the name says bits/dim."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from dgm_lab.progress import progress

LOG_2PI = math.log(2 * math.pi)
# Burda et al. (2015): a latent unit is active when Var_x(E_q[z_u | x]) exceeds this.
ACTIVE_UNIT_THRESHOLD = 0.01


def gaussian_log_density(z: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """log N(z; mean, diag(exp(log_var))), summed over the last dimension."""
    return -0.5 * (LOG_2PI + log_var + (z - mean).pow(2) * torch.exp(-log_var)).sum(-1)


def standard_normal_log_density(z: torch.Tensor) -> torch.Tensor:
    return -0.5 * (LOG_2PI + z.pow(2)).sum(-1)


def kl_to_standard_normal(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(log_var)) || N(0, I)) per latent dimension, shape (B, D), in float32."""
    mean, log_var = mean.float(), log_var.float()
    return 0.5 * (mean.pow(2) + log_var.exp() - 1.0 - log_var)


def bits_per_dim(nats_per_example: torch.Tensor | float, num_dims: int) -> torch.Tensor | float:
    """Convert a negative log-likelihood in nats per example to bits per dimension."""
    return nats_per_example / (num_dims * math.log(2))


def importance_weighted_log_likelihood(
    log_weights: Callable[[int], torch.Tensor], num_samples: int, chunk: int
) -> torch.Tensor:
    """Estimate log p(x) = log E_q[p(x, z) / q(z | x)] with ``num_samples`` importance samples.

    ``log_weights(n)`` returns log p(x, z_i) - log q(z_i | x) for n fresh samples, shape (n, B).
    Samples are drawn ``chunk`` at a time so memory stays bounded; the log-mean-exp runs in
    float64 over all of them. Returns shape (B,). The estimate is a lower bound in
    expectation and converges to log p(x) as ``num_samples`` grows (Burda et al., 2015).
    """
    if num_samples < 1 or chunk < 1:
        raise ValueError("num_samples and chunk must be positive")
    pieces = []
    for start in progress(range(0, num_samples, chunk), desc=f"IWAE k={num_samples}", unit="chunk", min_total=2):
        pieces.append(log_weights(min(chunk, num_samples - start)).double())
    all_weights = torch.cat(pieces, dim=0)
    return torch.logsumexp(all_weights, dim=0) - math.log(num_samples)


def active_unit_mask(posterior_means: torch.Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> torch.Tensor:
    """Which latent dimensions are active, shape (D,) bool: their posterior mean varies across data,
    Var_x(E_q[z|x]) > threshold. ``posterior_means`` has shape (N, D); fewer than 2 rows: none."""
    if len(posterior_means) < 2:
        return torch.zeros(posterior_means.shape[-1], dtype=torch.bool, device=posterior_means.device)
    return posterior_means.double().var(dim=0) > threshold


def active_units(posterior_means: torch.Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> int:
    """Number of active latent dimensions (``active_unit_mask``)."""
    return int(active_unit_mask(posterior_means, threshold).sum())
