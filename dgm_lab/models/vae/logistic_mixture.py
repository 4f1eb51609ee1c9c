"""Mixture of discretized logistics over 8-bit pixels (PixelCNN++, Salimans et al. 2017, section 2.1).

Each pixel (all C channels together) comes from one of K components, chosen with mixture weights
pi_k shared by its channels. Given the component, channel c is a logistic with location mu_kc and
scale s_kc, discretized into ``bins`` levels on [0, 1]: the level x has the logistic mass of
[x - h, x + h] with h = 0.5 / (bins - 1), and the edge levels 0 and 1 take all the mass below and
above, so the probabilities of the ``bins`` levels sum to exactly 1.

Channels given z: with ``channel_coupling=true`` (PixelCNN++'s linear dependence) the location of
channel c depends on the observed values of the channels before it within the same component,
mu_kc = sigmoid(m_kc) + sum_{j<c} tanh(a_kcj) (x_j - 1/2) (the paper's mu + a x on [-1, 1] data,
written on [0, 1]): an autoregressive pixel, still exactly normalised. With ``false`` the channels
are independent given z and the component.

Decoder output (B, P, H, W), P = K (weight logits) + K C (location logits m) + K C (log scales)
[+ K C (C - 1) / 2 coupling pre-activations a]; blocks in that order, component-major within each.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dgm_lab.errors import ConfigError
from dgm_lab.models.vae.likelihoods import Likelihood

LOG_SCALE_RANGE = (-7.0, 5.0)  # as DiscretizedLogistic: keeps the bin width / scale finite both ways


def log_bin_mass(x: torch.Tensor, location: torch.Tensor, log_scale: torch.Tensor, bins: int) -> torch.Tensor:
    """log P(level x) of a logistic(location, exp(log_scale)) discretized into ``bins`` levels on
    [0, 1]; x in [0, 1] on the level grid, any broadcastable shapes; nats.

    Interior bin: log(sigmoid(a) - sigmoid(b)) with a = (x + h - loc)/s, b = (x - h - loc)/s, written
    as log sigmoid(a) + log sigmoid(-b) + log(1 - exp(b - a)): no difference of two probabilities
    that both round to 1 (or 0) far in the tails. Edge bins: log sigmoid(a) and log sigmoid(-b).
    """
    half_bin = 0.5 / (bins - 1)
    inv_scale = torch.exp(-log_scale)
    upper = (x + half_bin - location) * inv_scale
    lower = (x - half_bin - location) * inv_scale
    log_cdf_upper = -F.softplus(-upper)  # log sigmoid(upper)
    log_survival_lower = -F.softplus(lower)  # log (1 - sigmoid(lower))
    width = 2 * half_bin * inv_scale  # upper - lower > 0
    interior = log_cdf_upper + log_survival_lower + torch.log(-torch.expm1(-width))
    return torch.where(x < half_bin, log_cdf_upper, torch.where(x > 1 - half_bin, log_survival_lower, interior))


class DiscretizedLogisticMixture(Likelihood):
    """K-component discretized logistic mixture per pixel on C-channel images in [0, 1].

    Args:
        num_components: K >= 1 (PixelCNN++ uses 10); K=1 without coupling is ``DiscretizedLogistic``.
        channel_coupling: PixelCNN++'s linear dependence of a channel on the channels before it.
        bins: levels per channel (256 for 8-bit images).
    """

    def __init__(self, num_components: int = 10, channel_coupling: bool = True, bins: int = 256):
        super().__init__()
        if not isinstance(num_components, int) or num_components < 1:
            raise ConfigError(f"model.likelihood.num_components must be a positive integer, got {num_components!r}.")
        if not isinstance(bins, int) or bins < 2:
            raise ConfigError(f"model.likelihood.bins must be an integer >= 2, got {bins!r}.")
        self.num_components, self.channel_coupling, self.bins = num_components, bool(channel_coupling), bins

    def decoder_channels(self, data_channels: int) -> int:
        k, c = self.num_components, data_channels
        return k * (1 + 2 * c + (c * (c - 1) // 2 if self.channel_coupling else 0))

    def split(self, params: torch.Tensor, channels: int):
        """(weight logits (B, K, H, W), location logits, log scales (B, K, C, H, W), coupling
        coefficients in [-1, 1] (B, K, C(C-1)/2, H, W) or None)."""
        k, c = self.num_components, channels
        if params.shape[1] != self.decoder_channels(c):
            raise ValueError(f"expected {self.decoder_channels(c)} parameter channels, got {params.shape[1]}")
        b, _, *space = params.shape
        logits, means, log_scales, rest = params.split([k, k * c, k * c, params.shape[1] - k * (1 + 2 * c)], dim=1)
        means, log_scales = means.reshape(b, k, c, *space), log_scales.reshape(b, k, c, *space)
        coupling = torch.tanh(rest.reshape(b, k, -1, *space)) if self.channel_coupling and c > 1 else None
        return logits, means, log_scales.clamp(*LOG_SCALE_RANGE), coupling

    def _locations(self, means: torch.Tensor, coupling: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
        """Per-component locations (B, K, C, H, W): sigmoid(m) plus, when coupled, the linear terms
        in the (observed or expected) earlier channels x (B, C, H, W) or (B, K, C, H, W)."""
        base = torch.sigmoid(means)
        if coupling is None:
            return base
        x = x.unsqueeze(1) if x.dim() == base.dim() - 1 else x
        rows, pair = [base[:, :, 0]], 0
        for c in range(1, base.shape[2]):
            shift = sum(coupling[:, :, pair + j] * (x[:, :, j] - 0.5) for j in range(c))
            rows.append(base[:, :, c] + shift)
            pair += c
        return torch.stack(rows, dim=2)

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x | params) per example (B,), nats, summed over pixels; x (B, C, H, W) in [0, 1]."""
        logits, means, log_scales, coupling = self.split(params, x.shape[1])
        per_channel = log_bin_mass(x.unsqueeze(1), self._locations(means, coupling, x), log_scales, self.bins)
        log_joint = F.log_softmax(logits, dim=1) + per_channel.sum(2)  # (B, K, H, W): weight x channels
        return torch.logsumexp(log_joint, dim=1).flatten(1).sum(1)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """The mixture's mean image (B, C, H, W) in [0, 1], for sample grids. Within a component the
        coupled locations are linear in the earlier channels, so their expectations follow channel
        by channel from the expected earlier channels; the clamp to [0, 1] ignores the edge bins."""
        c = self.channels_of(params)
        logits, means, _, coupling = self.split(params, c)
        expected = torch.sigmoid(means)
        if coupling is not None:
            for _ in range(c - 1):  # each pass fixes one more channel's expectation
                expected = self._locations(means, coupling, expected)
        weights = torch.softmax(logits, dim=1).unsqueeze(2)
        return (weights * expected).sum(1).clamp(0, 1)

    def channels_of(self, params: torch.Tensor) -> int:
        """The data channels C whose parameters ``params`` holds (inverse of ``decoder_channels``)."""
        for c in range(1, 65):
            if self.decoder_channels(c) == params.shape[1]:
                return c
        raise ValueError(f"{params.shape[1]} parameter channels fit no number of data channels")
