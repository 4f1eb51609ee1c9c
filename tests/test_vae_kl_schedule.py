"""KL warm-up and free bits in the VAE's training loss, against a hand computation, and the
CIFAR-10 VAE experiments that use them against posterior collapse."""

from __future__ import annotations

import pytest
import torch

from dgm_lab import builders
from dgm_lab.models.vae import VAE


def vae_with(compose_train, *overrides: str) -> VAE:
    cfg = compose_train(["model=vae", "model.latent_dim=2", *overrides])
    cfg.model.data_shape, cfg.model.num_classes = [1, 4, 4], 10
    return builders.build_model(cfg)


@pytest.mark.parametrize("step,weight", [(0, 0.0), (25, 0.25), (100, 1.0), (400, 1.0)])
def test_training_loss_warms_the_kl_up_and_frees_the_bits_below_the_floor(compose_train, monkeypatch, step, weight):
    vae = vae_with(compose_train, "model.kl_warmup_steps=100", "model.free_bits=0.25")
    kl_per_dim = torch.tensor([[0.05, 1.0], [0.15, 3.0]], requires_grad=True)  # batch means 0.1 and 2.0 nats
    recon = torch.tensor([-10.0, -20.0])
    terms = {"recon": recon, "kl_per_dim": kl_per_dim, "kl": kl_per_dim.sum(-1), "elbo": recon - kl_per_dim.sum(-1)}
    monkeypatch.setattr(VAE, "elbo_terms", lambda self, x, labels=None: terms)
    monkeypatch.setattr(VAE, "global_step", property(lambda self: step))
    out = vae.training_loss(torch.zeros(2, 1, 4, 4))
    # -mean recon + weight * (max(0.1, 0.25) + max(2.0, 0.25)): the first dimension pays the floor
    assert out["loss"].item() == pytest.approx(15.0 + weight * (0.25 + 2.0))
    assert out["elbo"].item() == pytest.approx(-15.0 - 2.1)  # the reported ELBO is the true bound, floor-free
    out["loss"].backward()
    assert kl_per_dim.grad[:, 0].abs().sum() == 0  # below the floor: no pressure towards the prior
    assert torch.allclose(kl_per_dim.grad[:, 1], torch.full((2,), weight / 2))


def test_plain_vae_loss_is_the_negative_elbo(compose_train):
    vae = vae_with(compose_train)
    x = torch.rand(3, 1, 4, 4).bernoulli()
    torch.manual_seed(0)
    loss = vae.training_loss(x)["loss"]
    torch.manual_seed(0)
    assert loss.item() == pytest.approx(-vae.elbo_terms(x)["elbo"].mean().item(), rel=1e-6)


@pytest.mark.parametrize("experiment", ["vae_cifar10", "vae_cifar10_cpu"])
def test_cifar10_vae_experiments_guard_against_posterior_collapse(compose_train, experiment):
    model = compose_train([f"experiment={experiment}"]).model
    assert model.kl_warmup_steps > 0 and model.free_bits > 0
