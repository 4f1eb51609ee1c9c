"""Partition functions of RBM-shaped models: annealed importance sampling (AIS) and, for small
models, exact enumeration. Log-partitions are natural logs (nats); the arithmetic is float64.

The model is an RBM with visible units v (D,) and binary hidden units h (H,), W of shape (D, H):
    bernoulli visible (v in {0, 1}):   E(v, h) = -b'v - c'h - v'Wh
    gaussian visible (v real, unit variance):  E(v, h) = |v - b|^2 / 2 - c'h - v'Wh
and Z = sum_{v, h} exp(-E(v, h)) (an integral over v for gaussian units). A two-layer DBM is
such a model too: its middle layer is one side, the visible and top layers together the other.

AIS (Neal 2001; Salakhutdinov & Murray 2008) anneals from a base-rate model A, whose visible
units are independent with biases b_A and whose hidden units are independent with biases c_A
(uniform, c_A = 0, unless given), to the target through
    log p*_beta(v) = (1 - beta) vis_A(v) + beta vis(v) + sum_j softplus((1 - beta) c_A + beta (W'v + c))_j,
with vis(v) = b'v (bernoulli) or -|v - b|^2 / 2 (gaussian); hidden units are summed out
analytically. Hidden base rates matter where uniform hidden units start the runs in a region
of the model that they never leave (a DBM's top layer half on, when the data keep it sparse).
Each run's log weight adds log p*_k(v_k) - log p*_{k-1}(v_k), and v_{k+1} is one Gibbs sweep at
beta_k from v_k. log Z = log Z_A + log mean_runs exp(log weight): unbiased in Z,
so in log Z it errs low on average when the runs are too few or too short.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from dgm_lab.progress import progress

VISIBLE_TYPES = ("bernoulli", "gaussian")
LOG_2PI = math.log(2 * math.pi)
# Salakhutdinov & Murray (2008): 500 betas on [0, 0.5], 4,000 on [0.5, 0.9], 10,000 on [0.9, 1].
PAPER_SCHEDULE = ((0.5, 500), (0.9, 4000), (1.0, 10000))
# Enumerating 2^n states beyond this is too slow to be a "helper".
MAX_ENUMERATED_UNITS = 26


@dataclass
class RBMParams:
    """Plain tensors of one RBM: weight (D, H), visible_bias (D,), hidden_bias (H,)."""

    weight: torch.Tensor
    visible_bias: torch.Tensor
    hidden_bias: torch.Tensor
    visible: str = "bernoulli"

    def __post_init__(self):
        if self.visible not in VISIBLE_TYPES:
            raise ValueError(f"visible must be one of {VISIBLE_TYPES}, got {self.visible!r}")

    def to(self, dtype: torch.dtype) -> RBMParams:
        return RBMParams(self.weight.detach().to(dtype), self.visible_bias.detach().to(dtype),
                         self.hidden_bias.detach().to(dtype), self.visible)


@dataclass
class AISResult:
    """An AIS estimate. ``log_z_low``/``log_z_high`` are log(Z_hat -/+ 3 standard errors of Z_hat)
    (-inf when Z_hat - 3 s.e. <= 0), the interval Salakhutdinov & Murray report.
    ``log_weight_std``: spread of the runs' log weights; well above 1 nat means a few runs carry
    the estimate and log Z is probably still too low (use more temperatures)."""

    log_z: float
    log_z_low: float
    log_z_high: float
    log_z_base: float
    num_betas: int
    num_runs: int
    log_weight_std: float

    def as_dict(self) -> dict:
        return asdict(self)


def ais_betas(num_betas: int) -> torch.Tensor:
    """Inverse temperatures 0 = beta_0 < ... < beta_K = 1 (K = ``num_betas``), float64 of shape
    (K + 1,), spaced like the paper's 14,500-step schedule: denser near beta = 1."""
    if num_betas < 3:
        raise ValueError(f"AIS needs at least 3 intermediate temperatures, got {num_betas}")
    total = sum(count for _, count in PAPER_SCHEDULE)
    counts = [max(1, round(num_betas * count / total)) for _, count in PAPER_SCHEDULE]
    counts[-1] = num_betas - sum(counts[:-1])
    pieces, start = [torch.zeros(1, dtype=torch.float64)], 0.0
    for (end, _), count in zip(PAPER_SCHEDULE, counts, strict=True):
        pieces.append(torch.linspace(start, end, count + 1, dtype=torch.float64)[1:])
        start = end
    return torch.cat(pieces)


def base_log_partition(base_bias: torch.Tensor, base_hidden_bias: torch.Tensor, visible: str) -> float:
    """log Z_A of the base-rate model: independent visible units and independent hidden units with
    biases ``base_hidden_bias`` (zeros: uniform, log 2 each), in nats."""
    base_bias = base_bias.double()
    if visible == "bernoulli":
        log_z = F.softplus(base_bias).sum()
    else:
        log_z = torch.tensor(0.5 * LOG_2PI * base_bias.numel(), dtype=torch.float64)
    return float(log_z + F.softplus(base_hidden_bias.double()).sum())


def _visible_term(params: RBMParams, bias: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """vis(v) for visible biases ``bias``: b'v or -|v - b|^2 / 2; shape (N,)."""
    if params.visible == "bernoulli":
        return v @ bias
    return -0.5 * (v - bias).pow(2).sum(-1)


def _uniform(shape, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(shape, generator=generator, dtype=like.dtype, device=like.device)


def _sample_visible(params: RBMParams, mean_input: torch.Tensor, generator) -> torch.Tensor:
    """Bernoulli units: sigmoid of the input; gaussian units: the input plus unit-variance noise."""
    if params.visible == "bernoulli":
        return (_uniform(mean_input.shape, mean_input, generator) < torch.sigmoid(mean_input)).to(mean_input.dtype)
    noise = torch.randn(mean_input.shape, generator=generator, dtype=mean_input.dtype, device=mean_input.device)
    return mean_input + noise


@torch.no_grad()
def annealed_importance_sampling(params: RBMParams, base_bias: torch.Tensor, num_betas: int = 14500,
                                 num_runs: int = 100, generator: torch.Generator | None = None,
                                 dtype: torch.dtype = torch.float64,
                                 base_hidden_bias: torch.Tensor | None = None) -> AISResult:
    """Estimate log Z (nats) of ``params`` with ``num_runs`` AIS runs over ``num_betas`` temperatures.

    ``base_bias`` (D,) are the base model's visible biases: log-odds of the training data's pixel
    means for bernoulli units (the "base-rate model"), the data mean for gaussian units.
    ``base_hidden_bias`` (H,), optional, are its hidden biases (default 0: uniform hidden units).
    Runs are drawn from ``generator`` (on the parameters' device) or the global RNG.
    """
    if num_runs < 2:
        raise ValueError(f"AIS needs at least 2 runs for its error bar, got {num_runs}")
    p = params.to(dtype)
    base_bias = base_bias.detach().to(dtype=dtype, device=p.weight.device)
    base_hidden = (torch.zeros(p.weight.shape[1], dtype=dtype, device=p.weight.device) if base_hidden_bias is None
                   else base_hidden_bias.detach().to(dtype=dtype, device=p.weight.device))
    betas = ais_betas(num_betas).tolist()
    v = _sample_visible(p, base_bias.expand(num_runs, -1), generator)  # exact draws from the base model
    log_w = torch.zeros(num_runs, dtype=torch.float64, device=v.device)
    for k in progress(range(1, len(betas)), desc=f"AIS ({num_runs} runs)", unit="temperature"):
        beta, previous = betas[k], betas[k - 1]
        hidden_input = v @ p.weight + p.hidden_bias
        gap = hidden_input - base_hidden  # hidden input at beta: base_hidden + beta * gap
        vis_gap = _visible_term(p, p.visible_bias, v) - _visible_term(p, base_bias, v)
        step = (beta - previous) * vis_gap + (F.softplus(base_hidden + beta * gap)
                                              - F.softplus(base_hidden + previous * gap)).sum(-1)
        log_w += step.double()
        if k < len(betas) - 1:  # one Gibbs sweep that leaves p*_beta invariant
            h_probs = torch.sigmoid(base_hidden + beta * gap)
            h = (_uniform(h_probs.shape, h_probs, generator) < h_probs).to(dtype)
            visible_input = (1 - beta) * base_bias + beta * (p.visible_bias + h @ p.weight.T)
            v = _sample_visible(p, visible_input, generator)
    return summarize_log_weights(log_w, base_log_partition(base_bias, base_hidden, p.visible), num_betas)


def summarize_log_weights(log_w: torch.Tensor, log_z_base: float, num_betas: int) -> AISResult:
    """log Z_hat = log Z_A + log mean exp(log_w), and log(Z_hat -/+ 3 s.e.), all in float64."""
    log_w = log_w.double()
    shift = log_w.max()
    ratios = torch.exp(log_w - shift)
    mean, sem = ratios.mean(), ratios.std(unbiased=True) / math.sqrt(len(ratios))
    offset = log_z_base + float(shift)
    low = mean - 3 * sem
    return AISResult(
        log_z=offset + float(torch.log(mean)),
        log_z_low=offset + float(torch.log(low)) if low > 0 else -math.inf,
        log_z_high=offset + float(torch.log(mean + 3 * sem)),
        log_z_base=log_z_base, num_betas=num_betas, num_runs=len(log_w), log_weight_std=float(log_w.std()),
    )


def binary_states(num_units: int, chunk: int = 4096, dtype=torch.float64, device=None) -> Iterator[torch.Tensor]:
    """All 2^num_units binary vectors, in chunks of shape (<= chunk, num_units)."""
    bits = 2 ** torch.arange(num_units, device=device)
    for start in range(0, 2**num_units, chunk):
        codes = torch.arange(start, min(start + chunk, 2**num_units), device=device)
        yield ((codes.unsqueeze(-1) & bits) > 0).to(dtype)


@torch.no_grad()
def exact_log_partition(params: RBMParams, chunk: int = 4096) -> float:
    """log Z (nats) by enumeration over the hidden states (the other side summed analytically),
    or over the visible states when those are binary and fewer. Float64; 2^min(D, H) terms."""
    p = params.to(torch.float64)
    num_visible, num_hidden = p.weight.shape
    if num_hidden <= MAX_ENUMERATED_UNITS and (p.visible == "gaussian" or num_hidden <= num_visible):
        terms = []
        for h in binary_states(num_hidden, chunk, device=p.weight.device):
            visible_input = p.visible_bias + h @ p.weight.T
            if p.visible == "bernoulli":
                summed = F.softplus(visible_input).sum(-1)
            else:  # Gaussian integral over v: (|b + Wh|^2 - |b|^2) / 2 + D/2 log(2 pi)
                summed = 0.5 * (visible_input.pow(2).sum(-1) - p.visible_bias.pow(2).sum()) + 0.5 * LOG_2PI * num_visible
            terms.append(torch.logsumexp(h @ p.hidden_bias + summed, 0))
        return float(torch.logsumexp(torch.stack(terms), 0))
    if p.visible == "bernoulli" and num_visible <= MAX_ENUMERATED_UNITS:
        terms = [torch.logsumexp(v @ p.visible_bias + F.softplus(v @ p.weight + p.hidden_bias).sum(-1), 0)
                 for v in binary_states(num_visible, chunk, device=p.weight.device)]
        return float(torch.logsumexp(torch.stack(terms), 0))
    raise ValueError(f"a {num_visible} x {num_hidden} model is too large to enumerate "
                     f"(one side must have at most {MAX_ENUMERATED_UNITS} binary units)")


def unnormalized_log_prob(params: RBMParams, v: torch.Tensor) -> torch.Tensor:
    """log p*(v) = -F(v), the visible marginal up to log Z, float64 of shape (N,)."""
    p = params.to(torch.float64)
    v = v.double()
    return _visible_term(p, p.visible_bias, v) + F.softplus(v @ p.weight + p.hidden_bias).sum(-1)


def base_rate_bias(data: torch.Tensor, visible: str = "bernoulli") -> torch.Tensor:
    """Base-model visible biases from data (N, D): smoothed log-odds of the pixel means
    ((sum + 1) / (N + 2), so no pixel is impossible) for bernoulli units, the mean for gaussian."""
    data = data.double()
    if visible == "gaussian":
        return data.mean(0)
    p = (data.sum(0) + 1) / (len(data) + 2)
    return torch.log(p) - torch.log1p(-p)
