"""GAN losses against values computed by hand, and the gradient penalty against finite differences."""

from __future__ import annotations

import math

import pytest
import torch

from dgm_lab.errors import ConfigError
from dgm_lab.models.gan.losses import LOSSES, adversarial_loss, gradient_penalty

REAL = [2.0, -1.0]  # discriminator outputs (logits / critic scores) on real examples
FAKE = [0.5, -3.0]  # ... on generated examples


def softplus(v: float) -> float:
    return math.log(1.0 + math.exp(v))


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


# -log sigmoid(r) = softplus(-r); -log(1 - sigmoid(f)) = softplus(f)
EXPECTED = {
    "non_saturating": (mean(softplus(-r) for r in REAL) + mean(softplus(f) for f in FAKE),
                       mean(softplus(-f) for f in FAKE)),
    "minimax": (mean(softplus(-r) for r in REAL) + mean(softplus(f) for f in FAKE),
                mean(math.log(1 - 1 / (1 + math.exp(-f))) for f in FAKE)),
    "wasserstein": (mean(FAKE) - mean(REAL), -mean(FAKE)),
    "hinge": (mean(max(0.0, 1 - r) for r in REAL) + mean(max(0.0, 1 + f) for f in FAKE), -mean(FAKE)),
    "least_squares": (0.5 * mean((r - 1) ** 2 for r in REAL) + 0.5 * mean(f**2 for f in FAKE),
                      0.5 * mean((f - 1) ** 2 for f in FAKE)),
}


def test_every_loss_has_a_hand_computed_value():
    assert set(EXPECTED) == set(LOSSES)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_loss_matches_hand_computation(name):
    loss = adversarial_loss(name)
    real, fake = torch.tensor(REAL, dtype=torch.float64), torch.tensor(FAKE, dtype=torch.float64)
    d_expected, g_expected = EXPECTED[name]
    assert loss.discriminator(real, fake).item() == pytest.approx(d_expected, rel=1e-12)
    assert loss.generator(fake).item() == pytest.approx(g_expected, rel=1e-12)


def test_cross_entropy_is_finite_for_extreme_logits():
    """BCE with logits never takes log(0), unlike sigmoid followed by BCELoss."""
    loss = adversarial_loss("non_saturating")
    huge = torch.tensor([200.0, -200.0])
    assert torch.isfinite(loss.discriminator(huge, -huge)) and torch.isfinite(loss.generator(-huge))
    assert loss.generator(torch.tensor([-200.0])).item() == pytest.approx(200.0)


def test_unknown_loss_is_one_sentence():
    with pytest.raises(ConfigError, match="model.loss='wgan' is not one of non_saturating"):
        adversarial_loss("wgan")


def small_critic() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 1)).double()


def penalty_by_finite_differences(critic, real, fake, mix, step=1e-6) -> float:
    """mean_i (||grad critic(x_i)||_2 - 1)^2, each gradient entry a central difference."""
    with torch.no_grad():
        points = mix[:, None] * real + (1 - mix[:, None]) * fake
        terms = []
        for x in points:
            grad = []
            for j in range(len(x)):
                up, down = x.clone(), x.clone()
                up[j] += step
                down[j] -= step
                grad.append((critic(up[None]).item() - critic(down[None]).item()) / (2 * step))
            terms.append((math.sqrt(sum(g * g for g in grad)) - 1.0) ** 2)
    return mean(terms)


def test_gradient_penalty_matches_finite_differences():
    critic = small_critic()
    generator = torch.Generator().manual_seed(1)
    real = torch.randn(4, 3, generator=generator, dtype=torch.float64) * 2
    fake = torch.randn(4, 3, generator=generator, dtype=torch.float64) * 2
    mix = torch.tensor([0.0, 0.3, 0.7, 1.0], dtype=torch.float64)
    score = lambda x: critic(x).squeeze(1)  # noqa: E731
    value = gradient_penalty(score, real, fake, mix)
    assert value.item() == pytest.approx(penalty_by_finite_differences(critic, real, fake, mix), rel=1e-7)
    assert value.item() > 0.1  # not trivially zero


def test_gradient_penalty_gradient_reaches_critic_weights():
    """d(penalty)/d(weight) through the double backward equals a finite difference in that weight."""
    critic = small_critic()
    real = torch.randn(4, 3, dtype=torch.float64)
    fake = torch.randn(4, 3, dtype=torch.float64)
    mix = torch.full((4,), 0.5, dtype=torch.float64)
    score = lambda x: critic(x).squeeze(1)  # noqa: E731
    weight = critic[0].weight
    gradient_penalty(score, real, fake, mix).backward()
    analytic = weight.grad[2, 1].item()
    step = 1e-6
    with torch.no_grad():
        weight[2, 1] += step
    up = gradient_penalty(score, real, fake, mix).item()
    with torch.no_grad():
        weight[2, 1] -= 2 * step
    down = gradient_penalty(score, real, fake, mix).item()
    assert analytic == pytest.approx((up - down) / (2 * step), rel=1e-5)
    assert abs(analytic) > 1e-4


def test_gradient_penalty_is_unchanged_by_a_loss_scale():
    """Under fp16 AMP the scores are scaled before differentiating; the penalty must not change."""
    critic = small_critic()
    real, fake = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    mix = torch.rand(4, dtype=torch.float64)
    score = lambda x: critic(x).squeeze(1)  # noqa: E731
    plain = gradient_penalty(score, real, fake, mix)
    scaled = gradient_penalty(score, real, fake, mix, grad_scale=torch.tensor(65536.0, dtype=torch.float64))
    assert scaled.item() == pytest.approx(plain.item(), rel=1e-12)
