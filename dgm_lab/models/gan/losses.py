"""Adversarial losses (``model.loss=``) and the WGAN-GP gradient penalty.

Every loss takes raw discriminator outputs (logits / critic scores, shape (B,), any real value)
and returns a scalar averaged over the batch, to be minimized:

* ``non_saturating`` (Goodfellow et al. 2014, section 3): D minimizes BCE(real, 1) + BCE(fake, 0);
  G minimizes BCE(fake, 1) = -log D(G(z)).
* ``minimax`` (the same paper's value function): D as above; G minimizes log(1 - D(G(z))).
* ``wasserstein`` (Arjovsky et al. 2017): critic minimizes mean(fake) - mean(real); G minimizes
  -mean(fake). Needs a Lipschitz constraint: ``model.gp_weight > 0`` (WGAN-GP, Gulrajani et al.
  2017) or ``model.spectral_norm=true``.
* ``hinge`` (Lim & Ye 2017; Miyato et al. 2018): D minimizes mean(relu(1 - real)) +
  mean(relu(1 + fake)); G minimizes -mean(fake).
* ``least_squares`` (LSGAN, Mao et al. 2017, a=0, b=c=1): D minimizes
  0.5 mean((real - 1)^2) + 0.5 mean(fake^2); G minimizes 0.5 mean((fake - 1)^2).

Cross-entropies use ``binary_cross_entropy_with_logits`` (the functional BCEWithLogitsLoss): it
is autocast-safe and exact for large logits, unlike sigmoid followed by BCELoss.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from dgm_lab.errors import ConfigError


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


class AdversarialLoss:
    """Interface: ``discriminator(real, fake)`` and ``generator(fake)``, each a scalar."""

    name = ""
    needs_lipschitz = False  # True: unbounded critic, must be constrained (penalty or spectral norm)

    def discriminator(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def generator(self, fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class NonSaturating(AdversarialLoss):
    name = "non_saturating"

    def discriminator(self, real, fake):
        return _bce(real, 1.0) + _bce(fake, 0.0)

    def generator(self, fake):
        return _bce(fake, 1.0)


class Minimax(NonSaturating):
    name = "minimax"

    def generator(self, fake):
        # log(1 - sigmoid(l)) = -BCE(l, 0): saturates (vanishing gradient) when D rejects fakes.
        return -_bce(fake, 0.0)


class Wasserstein(AdversarialLoss):
    name = "wasserstein"
    needs_lipschitz = True

    def discriminator(self, real, fake):
        return fake.mean() - real.mean()

    def generator(self, fake):
        return -fake.mean()


class Hinge(AdversarialLoss):
    name = "hinge"

    def discriminator(self, real, fake):
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()

    def generator(self, fake):
        return -fake.mean()


class LeastSquares(AdversarialLoss):
    name = "least_squares"

    def discriminator(self, real, fake):
        return 0.5 * (real - 1.0).pow(2).mean() + 0.5 * fake.pow(2).mean()

    def generator(self, fake):
        return 0.5 * (fake - 1.0).pow(2).mean()


LOSSES: dict[str, type[AdversarialLoss]] = {
    cls.name: cls for cls in (NonSaturating, Minimax, Wasserstein, Hinge, LeastSquares)
}


def adversarial_loss(name: str) -> AdversarialLoss:
    """The loss called ``name``; a clear error for anything else."""
    if name not in LOSSES:
        raise ConfigError(f"model.loss={name!r} is not one of {', '.join(LOSSES)}.")
    return LOSSES[name]()


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor,
                     fake: torch.Tensor, mix: torch.Tensor,
                     grad_scale: torch.Tensor | None = None) -> torch.Tensor:
    """WGAN-GP penalty mean_i (||grad_x critic(x_i)||_2 - 1)^2 at x_i = mix_i real_i + (1 - mix_i) fake_i.

    Args:
        critic: maps a batch (B, *shape) to scores (B,) (labels already bound for conditional D).
        real, fake: (B, *shape) batches; ``fake`` should be detached from the generator.
        mix: (B,) interpolation weights in [0, 1], uniform in the paper.
        grad_scale: the AMP loss scale (a tensor) or None. Under fp16 the scores are scaled before
            differentiating so that small input gradients do not underflow, then unscaled
            (PyTorch AMP recipe for gradient penalties).

    The penalty is differentiable with respect to the critic's parameters (``create_graph``).
    """
    weights = mix.view(-1, *([1] * (real.dim() - 1))).to(real.dtype)
    points = (weights * real.detach() + (1 - weights) * fake.detach()).requires_grad_(True)
    scores = critic(points).sum()
    if grad_scale is not None:
        scores = scores * grad_scale
    (grads,) = torch.autograd.grad(scores, points, create_graph=True)
    if grad_scale is not None:
        grads = grads / grad_scale
    if grads.dtype in (torch.float16, torch.bfloat16):  # the norm in float32 under autocast
        grads = grads.float()
    norms = grads.flatten(1).norm(2, dim=1)
    return (norms - 1.0).pow(2).mean()
