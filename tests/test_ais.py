"""AIS log Z against exact enumeration; the enumeration against brute force over the joint."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from dgm_lab.metrics.ais import (
    RBMParams,
    ais_betas,
    annealed_importance_sampling,
    base_rate_bias,
    exact_log_partition,
    summarize_log_weights,
)
from dgm_lab.models.boltzmann import DBMParams, RBMLayer

TOLERANCE_NATS = 0.1  # the bar for AIS against the exact log Z


def random_rbm(num_visible, num_hidden, visible="bernoulli", scale=1.0, seed=0) -> RBMParams:
    g = torch.Generator().manual_seed(seed)
    return RBMParams(torch.randn(num_visible, num_hidden, generator=g, dtype=torch.float64) * scale,
                     torch.randn(num_visible, generator=g, dtype=torch.float64) * 0.5,
                     torch.randn(num_hidden, generator=g, dtype=torch.float64) * 0.5, visible)


def brute_force_log_z(p: RBMParams) -> float:
    """Sum of exp(-E(v, h)) over every binary (v, h), E written out term by term."""
    w, b, c = p.weight.numpy(), p.visible_bias.numpy(), p.hidden_bias.numpy()
    terms = []
    for v in itertools.product([0, 1], repeat=len(b)):
        for h in itertools.product([0, 1], repeat=len(c)):
            v_, h_ = np.array(v), np.array(h)
            terms.append(b @ v_ + c @ h_ + v_ @ w @ h_)
    return float(np.logaddexp.reduce(terms))


def test_schedule_follows_the_paper():
    betas = ais_betas(14500)
    assert len(betas) == 14501 and betas[0] == 0 and betas[-1] == 1
    assert bool((betas[1:] > betas[:-1]).all())
    assert betas[500] == pytest.approx(0.5) and betas[4500] == pytest.approx(0.9)
    small = ais_betas(29)
    assert len(small) == 30 and small[-1] == 1 and bool((small[1:] > small[:-1]).all())


def test_exact_enumeration_matches_brute_force_both_ways():
    p = random_rbm(5, 4)
    transposed = RBMParams(p.weight.T.contiguous(), p.hidden_bias, p.visible_bias)  # same Z
    expected = brute_force_log_z(p)
    assert exact_log_partition(p) == pytest.approx(expected, abs=1e-10)  # enumerates the 4 hidden
    assert exact_log_partition(transposed) == pytest.approx(expected, abs=1e-10)  # enumerates 4 visible


def test_gaussian_enumeration_matches_numerical_integration():
    p = random_rbm(1, 3, "gaussian", scale=0.8)
    grid = np.linspace(-30, 30, 200001)
    total = 0.0
    for h in itertools.product([0, 1], repeat=3):
        h_ = np.array(h, dtype=float)
        exponent = (-(grid - p.visible_bias.item()) ** 2 / 2 + p.hidden_bias.numpy() @ h_
                    + grid * (p.weight.numpy()[0] @ h_))
        total += np.trapezoid(np.exp(exponent), grid)
    assert exact_log_partition(p) == pytest.approx(math.log(total), abs=1e-8)


def test_log_weight_summary_is_the_mean_and_three_standard_errors():
    result = summarize_log_weights(torch.tensor([1.0, 2.0, 3.0]).log(), log_z_base=10.0, num_betas=5)
    sem = 1.0 / math.sqrt(3)  # std of (1, 2, 3) is 1
    assert result.log_z == pytest.approx(10 + math.log(2))
    assert result.log_z_low == pytest.approx(10 + math.log(2 - 3 * sem))
    assert result.log_z_high == pytest.approx(10 + math.log(2 + 3 * sem))
    wide = summarize_log_weights(torch.tensor([0.0, -20.0]), log_z_base=0.0, num_betas=5)
    assert wide.log_z_low == -math.inf


@pytest.mark.parametrize("visible,scale", [("bernoulli", 1.0), ("gaussian", 0.3)])
def test_ais_matches_exact_on_random_20x12(visible, scale):
    p = random_rbm(20, 12, visible, scale=scale, seed=3)
    exact = exact_log_partition(p)
    result = annealed_importance_sampling(p, torch.zeros(20, dtype=torch.float64), num_betas=5000, num_runs=100,
                                          generator=torch.Generator().manual_seed(0))
    assert abs(result.log_z - exact) < TOLERANCE_NATS, (result, exact)
    assert result.log_z_low <= exact <= result.log_z_high


@pytest.mark.parametrize("visible,scale", [("bernoulli", 1.0), ("gaussian", 0.3)])
def test_ais_with_hidden_base_rates_matches_exact_and_the_uniform_base(visible, scale):
    """Hidden base rates change the path, not the target: the same exact log Z (their own log Z_A
    is part of the estimate), and with zero hidden biases exactly the uniform-hidden runs."""
    p = random_rbm(20, 12, visible, scale=scale, seed=3)
    exact = exact_log_partition(p)
    base = torch.zeros(20, dtype=torch.float64)
    hidden_base = torch.linspace(-3, 2, 12, dtype=torch.float64)
    result = annealed_importance_sampling(p, base, num_betas=5000, num_runs=100,
                                          generator=torch.Generator().manual_seed(0), base_hidden_bias=hidden_base)
    assert abs(result.log_z - exact) < TOLERANCE_NATS, (result, exact)
    assert result.log_z_base == pytest.approx(float(torch.nn.functional.softplus(hidden_base).sum())
                                              + (20 * math.log(2) if visible == "bernoulli" else 10 * math.log(2 * math.pi)))
    uniform, zeros = (annealed_importance_sampling(p, base, num_betas=200, num_runs=10, generator=torch.Generator().manual_seed(1),
                                                   base_hidden_bias=hidden) for hidden in (None, torch.zeros(12)))
    assert zeros.log_z == pytest.approx(uniform.log_z, abs=1e-9)


def mnist_rbm_with_15_hidden() -> tuple[RBMLayer, torch.Tensor]:
    """A 784 x 15 RBM trained for 5 epochs of CD-1 on the embedded MNIST digits (binarized)."""
    from dgm_lab.data import MNIST5kDataModule

    torch.manual_seed(0)
    data = MNIST5kDataModule(binarize="static")
    data.setup()
    images = data.splits["train"].images.flatten(1)
    layer = RBMLayer(784, 15)
    with torch.no_grad():
        layer.visible_bias.copy_(base_rate_bias(images).float())
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.5)
    for _ in range(5):
        for batch in images[torch.randperm(len(images))].split(100):
            layer.contrastive_divergence(batch, steps=1)
            optimizer.step()
    return layer, images


def test_ais_matches_exact_on_mnist_784x15():
    layer, images = mnist_rbm_with_15_hidden()
    p = layer.ais_params().to(torch.float64)
    assert p.weight.abs().max() > 0.3  # a trained, peaked model, not the near-uniform start
    exact = exact_log_partition(p)  # 2^15 hidden states, visible units summed out
    result = annealed_importance_sampling(p, base_rate_bias(images), num_betas=3000, num_runs=100,
                                          generator=torch.Generator().manual_seed(0))
    assert abs(result.log_z - exact) < TOLERANCE_NATS, (result, exact)


def test_dbm_partition_function_as_an_rbm():
    """A 2-layer DBM is an RBM between h1 and (v, h2): same Z as brute force over (v, h1, h2)."""
    g = torch.Generator().manual_seed(1)
    p = DBMParams(*(torch.randn(shape, generator=g, dtype=torch.float64) for shape in [(4, 3), (3, 3), (4,), (3,), (3,)]))
    terms = []
    for state in itertools.product([0.0, 1.0], repeat=10):
        v, h1, h2 = (torch.tensor(state[a:b], dtype=torch.float64) for a, b in [(0, 4), (4, 7), (7, 10)])
        terms.append(v @ p.b + h1 @ p.c1 + h2 @ p.c2 + v @ p.w1 @ h1 + h1 @ p.w2 @ h2)
    brute = float(torch.logsumexp(torch.stack(terms), 0))
    assert exact_log_partition(p.as_rbm()) == pytest.approx(brute, abs=1e-10)
    result = annealed_importance_sampling(p.as_rbm(), torch.zeros(3, dtype=torch.float64), num_betas=2000,
                                          num_runs=100, generator=torch.Generator().manual_seed(0))
    assert abs(result.log_z - brute) < TOLERANCE_NATS
