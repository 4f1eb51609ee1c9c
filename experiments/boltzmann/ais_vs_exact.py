"""AIS log Z against the exact log Z (enumeration) on small RBMs; prints a Markdown table.

    OMP_NUM_THREADS=1 DGM_DATA_DIR=../shared/data python experiments/boltzmann/ais_vs_exact.py

Models: a random 20 x 12 Bernoulli RBM (weights N(0, 1)), a random 20 x 12 Gaussian-Bernoulli RBM
(weights N(0, 0.3^2)), and 784 x 15 / 784 x 20 RBMs trained by CD-1 (10 epochs, SGD lr 0.1,
momentum 0.5) on statically binarized full MNIST, the kind Salakhutdinov & Murray (2008) checked.
Every AIS run starts from the base-rate model and uses 100 runs.
"""

from __future__ import annotations

import time

import torch

from dgm_lab.data import MNISTDataModule
from dgm_lab.metrics.ais import (
    RBMParams,
    annealed_importance_sampling,
    base_rate_bias,
    exact_log_partition,
)
from dgm_lab.models.boltzmann import RBMLayer

SCHEDULES = [1000, 14500]


def random_rbm(num_visible, num_hidden, visible="bernoulli", scale=1.0, seed=0) -> RBMParams:
    """Weights N(0, scale^2), biases N(0, 0.25): the same draw as tests/test_ais.py."""
    g = torch.Generator().manual_seed(seed)
    return RBMParams(torch.randn(num_visible, num_hidden, generator=g, dtype=torch.float64) * scale,
                     torch.randn(num_visible, generator=g, dtype=torch.float64) * 0.5,
                     torch.randn(num_hidden, generator=g, dtype=torch.float64) * 0.5, visible)


def trained_mnist_rbm(num_hidden: int, images: torch.Tensor, epochs: int = 10):
    torch.manual_seed(0)
    layer = RBMLayer(784, num_hidden)
    with torch.no_grad():
        layer.visible_bias.copy_(base_rate_bias(images).float())
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.5)
    for _ in range(epochs):
        for batch in images[torch.randperm(len(images))].split(100):
            layer.contrastive_divergence(batch)
            optimizer.step()
    return layer.ais_params().to(torch.float64)


def main() -> None:
    data = MNISTDataModule(binarize="static")
    data.setup()
    images = data.splits["train"].images.flatten(1)
    models = {
        "random 20x12 Bernoulli": (random_rbm(20, 12, scale=1.0, seed=3), torch.zeros(20, dtype=torch.float64)),
        "random 20x12 Gaussian": (random_rbm(20, 12, "gaussian", scale=0.3, seed=3), torch.zeros(20, dtype=torch.float64)),
        "MNIST 784x15 (CD-1, 10 epochs)": (trained_mnist_rbm(15, images), base_rate_bias(images)),
        "MNIST 784x20 (CD-1, 10 epochs)": (trained_mnist_rbm(20, images), base_rate_bias(images)),
    }
    print("| model | exact log Z | num_betas | AIS log Z | error (nats) | +/- 3 s.e. interval | log-weight std | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (params, base) in models.items():
        exact = exact_log_partition(params)
        for num_betas in SCHEDULES:
            started = time.time()
            result = annealed_importance_sampling(params, base, num_betas, 100, generator=torch.Generator().manual_seed(0))
            print(f"| {name} | {exact:.3f} | {num_betas} | {result.log_z:.3f} | {result.log_z - exact:+.3f} | "
                  f"[{result.log_z_low - exact:+.3f}, {result.log_z_high - exact:+.3f}] | {result.log_weight_std:.2f} | "
                  f"{time.time() - started:.0f} |", flush=True)


if __name__ == "__main__":
    main()
