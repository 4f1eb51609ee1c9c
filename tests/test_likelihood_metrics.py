"""Likelihood metrics, decoder likelihoods and the VAE's IWAE estimate, each checked against an
independent computation: closed forms in numpy, scipy densities, or exact enumeration.

The centrepiece is a linear-Gaussian model, p(z) = N(0, I), p(x|z) = N(Wz + b, sigma^2 I), whose
marginal log p(x) = log N(x; b, W W^T + sigma^2 I) and exact posterior are known in closed form.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import expit, logsumexp

from dgm_lab.metrics.likelihood import (
    active_units,
    bits_per_dim,
    gaussian_log_density,
    importance_weighted_log_likelihood,
    kl_to_standard_normal,
    standard_normal_log_density,
)
from dgm_lab.models.networks import MLP
from dgm_lab.models.vae import VAE, Bernoulli, DiscretizedLogistic, Gaussian


# -- metrics/likelihood.py -------------------------------------------------------------------
def test_kl_to_standard_normal_matches_numpy_closed_form():
    rng = np.random.default_rng(0)
    mean = rng.normal(size=(6, 4)) * 2
    log_var = rng.uniform(-4, 3, size=(6, 4))
    # KL(N(m, s^2) || N(0, 1)) = log(1/s) + (s^2 + m^2)/2 - 1/2, written with the std, not log_var.
    std = np.sqrt(np.exp(log_var))
    expected = np.log(1 / std) + (std**2 + mean**2) / 2 - 0.5
    got = kl_to_standard_normal(torch.tensor(mean), torch.tensor(log_var))
    assert got.shape == (6, 4)
    assert got.dtype == torch.float32  # documented: computed in float32 even for float64 input
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_kl_to_standard_normal_is_zero_only_at_the_prior():
    zero = kl_to_standard_normal(torch.zeros(1, 3), torch.zeros(1, 3))
    assert torch.all(zero == 0)
    assert torch.all(kl_to_standard_normal(torch.full((1, 3), 0.1), torch.zeros(1, 3)) > 0)
    assert torch.all(kl_to_standard_normal(torch.zeros(1, 3), torch.full((1, 3), -0.1)) > 0)


def test_kl_to_standard_normal_matches_monte_carlo_with_torch_distributions():
    torch.manual_seed(0)
    mean = torch.tensor([[0.5, -1.0, 0.0]])
    log_var = torch.tensor([[-1.0, 0.5, 1.0]])
    q = torch.distributions.Normal(mean, torch.exp(0.5 * log_var))
    p = torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))
    z = q.sample((200_000,))
    # E_q[log q - log p] per dimension; the MC standard error here is below 0.01.
    monte_carlo = (q.log_prob(z) - p.log_prob(z)).mean(0)
    torch.testing.assert_close(kl_to_standard_normal(mean, log_var), monte_carlo, atol=0.02, rtol=0.02)


def test_gaussian_log_density_matches_scipy_multivariate_normal():
    rng = np.random.default_rng(1)
    z, mean = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    log_var = rng.uniform(-2, 2, size=(5, 3))
    expected = [stats.multivariate_normal.logpdf(z[i], mean=mean[i], cov=np.diag(np.exp(log_var[i])))
                for i in range(5)]
    got = gaussian_log_density(torch.tensor(z), torch.tensor(mean), torch.tensor(log_var))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10)


def test_gaussian_log_density_broadcasts_samples_over_a_batch_like_the_vae():
    # The VAE calls it with z of shape (n, B, D) against mean/log_var of shape (B, D).
    rng = np.random.default_rng(2)
    z = rng.normal(size=(4, 3, 2))
    mean, log_var = rng.normal(size=(3, 2)), rng.uniform(-1, 1, size=(3, 2))
    got = gaussian_log_density(torch.tensor(z), torch.tensor(mean), torch.tensor(log_var))
    assert got.shape == (4, 3)
    for s in range(4):
        for b in range(3):
            expected = stats.multivariate_normal.logpdf(z[s, b], mean[b], np.diag(np.exp(log_var[b])))
            assert got[s, b].item() == pytest.approx(expected, rel=1e-10)


def test_standard_normal_log_density_matches_scipy():
    z = np.random.default_rng(3).normal(size=(7, 5)) * 3
    expected = stats.multivariate_normal.logpdf(z, mean=np.zeros(5), cov=np.eye(5))
    np.testing.assert_allclose(standard_normal_log_density(torch.tensor(z)).numpy(), expected, rtol=1e-10)


def test_bits_per_dim_of_a_uniform_8_bit_image_is_8():
    # A uniform distribution over 256 levels in each of D dims has NLL D * ln 256 nats = 8 bits/dim.
    num_dims = 784
    assert bits_per_dim(num_dims * math.log(256), num_dims) == pytest.approx(8.0, rel=1e-12)


def test_bits_per_dim_matches_definition_on_tensors():
    nats = torch.tensor([10.0, 250.0, 1000.0], dtype=torch.float64)
    expected = nats.numpy() / 30 / np.log(2)  # nats -> bits is division by ln 2, then per dim
    np.testing.assert_allclose(bits_per_dim(nats, 30).numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(expected, np.log2(np.exp(nats.numpy() / 30)), rtol=1e-12)


def test_active_units_counts_dims_whose_posterior_mean_varies():
    rng = np.random.default_rng(4)
    # Columns standardised to sample variance exactly 1 (ddof=1), then scaled to chosen variances;
    # 0.012 and 0.008 sit just either side of the 0.01 threshold. The offset of 50 must not matter.
    noise = rng.normal(size=(400, 8))
    noise = (noise - noise.mean(0)) / noise.std(0, ddof=1)
    variances = np.array([1.0, 0.2, 0.012, 0.008, 1e-4, 0.0, 0.005, 1e-6])
    means = 50.0 + noise * np.sqrt(variances)
    assert active_units(torch.tensor(means, dtype=torch.float32)) == 3
    assert active_units(torch.tensor(means), threshold=0.1) == 2
    assert active_units(torch.tensor(means[:1])) == 0  # one example has no variance to measure


def _table_log_weights(table: torch.Tensor):
    """A deterministic ``log_weights(n)`` that hands out consecutive rows of ``table``."""
    calls = []

    def log_weights(n):
        start = sum(calls)
        calls.append(n)
        return table[start:start + n]

    return log_weights, calls


@pytest.mark.parametrize("chunk", [1, 3, 7, 37, 1000])
def test_importance_weighted_log_likelihood_is_independent_of_chunk_size(chunk):
    torch.manual_seed(0)
    # float32 weights of very different size, so the float64 log-mean-exp is what keeps precision.
    table = (torch.randn(37, 4) * 20 - 300).float()
    expected = logsumexp(table.double().numpy(), axis=0) - np.log(37)
    log_weights, calls = _table_log_weights(table)
    got = importance_weighted_log_likelihood(log_weights, 37, chunk)
    assert got.dtype == torch.float64 and got.shape == (4,)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)
    assert sum(calls) == 37 and max(calls) <= chunk  # exactly num_samples drawn, never more than chunk


@pytest.mark.parametrize("num_samples,chunk", [(0, 5), (5, 0)])
def test_importance_weighted_log_likelihood_rejects_non_positive_sizes(num_samples, chunk):
    with pytest.raises(ValueError, match="positive"):
        importance_weighted_log_likelihood(lambda n: torch.zeros(n, 1), num_samples, chunk)


# -- models/vae/likelihoods.py -------------------------------------------------------------------
def test_bernoulli_log_prob_matches_scipy_logpmf():
    torch.manual_seed(0)
    logits = torch.randn(3, 1, 4, 4, dtype=torch.float64) * 3
    x = torch.bernoulli(torch.full((3, 1, 4, 4), 0.5, dtype=torch.float64))
    pmf = stats.bernoulli.logpmf(x.numpy(), expit(logits.numpy()))
    expected = pmf.reshape(3, -1).sum(1)
    np.testing.assert_allclose(Bernoulli().log_prob(logits, x).numpy(), expected, rtol=1e-8)


@pytest.mark.parametrize("likelihood", [Bernoulli(), Gaussian()], ids=["bernoulli", "gaussian"])
def test_log_prob_of_repeated_draws_matches_scipy_per_draw(likelihood):
    """The importance-weighted estimates' path: 3 draws of parameters for each of 2 examples,
    sample-major, scored against the examples without copying them; scipy scores each draw."""
    torch.manual_seed(0)
    draws, batch = 3, 2
    x = torch.bernoulli(torch.full((batch, 1, 4, 4), 0.5, dtype=torch.float64))
    params = torch.randn(draws * batch, likelihood.decoder_channels(1), 4, 4, dtype=torch.float64)
    expected = []
    for i in range(draws * batch):
        target = x[i % batch].numpy()  # sample-major: row i belongs to example i mod batch
        if isinstance(likelihood, Bernoulli):
            expected.append(stats.bernoulli.logpmf(target, expit(params[i].numpy())).sum())
        else:
            mean, log_scale = params[i, :1].numpy(), params[i, 1:].numpy().clip(min=likelihood.min_log_scale)
            expected.append(stats.norm.logpdf(target, loc=mean, scale=np.exp(log_scale)).sum())
    got = likelihood.log_prob_repeated(params, x, draws)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-8)


def test_gaussian_log_prob_matches_scipy_norm_logpdf():
    torch.manual_seed(0)
    # Two data channels: params has 4 channels, the first 2 are means, the last 2 log-scales.
    mean = torch.rand(3, 2, 4, 4, dtype=torch.float64)
    log_scale = torch.rand(3, 2, 4, 4, dtype=torch.float64) * 4 - 3
    x = torch.rand(3, 2, 4, 4, dtype=torch.float64)
    params = torch.cat([mean, log_scale], dim=1)
    expected = stats.norm.logpdf(x.numpy(), loc=mean.numpy(), scale=np.exp(log_scale.numpy()))
    got = Gaussian().log_prob(params, x)
    np.testing.assert_allclose(got.numpy(), expected.reshape(3, -1).sum(1), rtol=1e-10)


def test_gaussian_log_prob_clamps_the_log_scale_from_below():
    # A log-scale of -20 is clamped to min_log_scale, so the density is that of scale exp(-3).
    params = torch.tensor([[0.5, -20.0]], dtype=torch.float64)
    x = torch.tensor([[0.5001]], dtype=torch.float64)
    expected = stats.norm.logpdf(0.5001, loc=0.5, scale=np.exp(-3.0))
    assert Gaussian(min_log_scale=-3.0).log_prob(params, x).item() == pytest.approx(expected, rel=1e-10)


def _all_256_levels_log_prob(mean_logit: float, log_scale: float) -> torch.Tensor:
    """log P(x) of a single-pixel DiscretizedLogistic at every level x in {0, 1/255, ..., 1}."""
    levels = torch.arange(256, dtype=torch.float32).div(255).unsqueeze(1)
    params = torch.tensor([[mean_logit, log_scale]]).expand(256, 2)
    return DiscretizedLogistic().log_prob(params, levels)


@pytest.mark.parametrize("seed", range(4))
def test_discretized_logistic_probabilities_of_all_256_bins_sum_to_one(seed):
    rng = np.random.default_rng(seed)
    mean_logit, log_scale = float(rng.normal() * 2), float(rng.uniform(-5, 0.5))
    log_prob = _all_256_levels_log_prob(mean_logit, log_scale)
    assert log_prob.shape == (256,)
    assert torch.all(log_prob <= 0)
    assert log_prob.double().exp().sum().item() == pytest.approx(1.0, abs=1e-4)


def test_discretized_logistic_bins_match_scipy_logistic_cdf():
    mean_logit, log_scale = 0.3, -2.5
    loc, scale, half_bin = expit(mean_logit), np.exp(log_scale), 0.5 / 255
    log_prob = _all_256_levels_log_prob(mean_logit, log_scale).double().numpy()
    cdf = functools.partial(stats.logistic.cdf, loc=loc, scale=scale)
    # An interior bin is the logistic mass of [x - half_bin, x + half_bin] ...
    x = 140 / 255
    assert log_prob[140] == pytest.approx(np.log(cdf(x + half_bin) - cdf(x - half_bin)), abs=1e-4)
    # ... and the edge bins take all the mass below 0 and above 1.
    assert log_prob[0] == pytest.approx(np.log(cdf(half_bin)), abs=1e-4)
    assert log_prob[255] == pytest.approx(np.log(1 - cdf(1 - half_bin)), abs=1e-4)


# -- the VAE on a linear-Gaussian model with known log p(x) -----------------------------------
D, LATENT, SIGMA = 5, 2, 0.5
COLUMN_NORMS = np.array([1.5, 0.7])


class LinearGaussian:
    """p(z) = N(0, I), p(x|z) = N(W z + b, SIGMA^2 I), with W's columns orthogonal so that the
    exact posterior N(A (x - b), diag(v)) is diagonal: v_j = 1 / (1 + |W_j|^2 / SIGMA^2)."""

    def __init__(self, seed: int = 0):
        rng = np.random.default_rng(seed)
        q, _ = np.linalg.qr(rng.normal(size=(D, LATENT)))
        self.W = q * COLUMN_NORMS
        self.b = rng.normal(size=D) * 0.3
        self.post_var = 1.0 / (1.0 + COLUMN_NORMS**2 / SIGMA**2)
        self.A = self.post_var[:, None] * self.W.T / SIGMA**2
        # Reference check of the algebra: the general posterior covariance is diagonal here.
        full = np.linalg.inv(np.eye(LATENT) + self.W.T @ self.W / SIGMA**2)
        np.testing.assert_allclose(full, np.diag(self.post_var), atol=1e-12)

    def sample_x(self, n: int, seed: int = 1) -> np.ndarray:
        rng = np.random.default_rng(seed)
        z = rng.normal(size=(n, LATENT))
        return z @ self.W.T + self.b + SIGMA * rng.normal(size=(n, D))

    def log_px(self, x: np.ndarray) -> np.ndarray:
        cov = self.W @ self.W.T + SIGMA**2 * np.eye(D)
        return stats.multivariate_normal.logpdf(x, mean=self.b, cov=cov)

    def posterior_mean(self, x: np.ndarray) -> np.ndarray:
        return (x - self.b) @ self.A.T

    def elbo(self, x: np.ndarray, q_mean: np.ndarray, q_var: np.ndarray) -> np.ndarray:
        """Closed-form ELBO of q = N(q_mean, diag(q_var)): E_q log p(x|z) - KL(q || p(z))."""
        residual = x - q_mean @ self.W.T - self.b
        expected_sq = (residual**2).sum(1) + (q_var * (self.W**2).sum(0)).sum(1)
        recon = -0.5 * D * np.log(2 * np.pi * SIGMA**2) - expected_sq / (2 * SIGMA**2)
        kl = 0.5 * (q_mean**2 + q_var - 1 - np.log(q_var)).sum(1)
        return recon - kl


def build_vae(lg: LinearGaussian, iwae_batch: int = 100_000, mean_shift: float = 0.0,
              var_factor: float = 1.0) -> VAE:
    """A real VAE whose single-Linear encoder/decoder implement ``lg`` exactly; the encoder can
    be moved off the exact posterior by shifting its mean and scaling its variance."""
    model = VAE(
        encoder=functools.partial(MLP, hidden=[]), decoder=functools.partial(MLP, hidden=[]),
        likelihood=Gaussian(), latent_dim=LATENT, data_shape=[D],
        optimizer=functools.partial(torch.optim.Adam, lr=1e-3),
        evaluation={"iwae_k": 10, "iwae_batch": iwae_batch},
    )
    encoder, decoder = model.encoder.net[0], model.decoder.net[0]
    assert isinstance(encoder, torch.nn.Linear) and isinstance(decoder, torch.nn.Linear)
    t = functools.partial(torch.tensor, dtype=torch.float32)
    with torch.no_grad():
        # Encoder output = [posterior mean (LATENT), posterior log-variance (LATENT)].
        encoder.weight.copy_(t(np.vstack([lg.A, np.zeros((LATENT, D))])))
        encoder.bias.copy_(t(np.concatenate([-lg.A @ lg.b + mean_shift, np.log(lg.post_var * var_factor)])))
        # Decoder output = [mean W z + b (D), constant log-scale log SIGMA (D)].
        decoder.weight.copy_(t(np.vstack([lg.W, np.zeros((D, LATENT))])))
        decoder.bias.copy_(t(np.concatenate([lg.b, np.full(D, np.log(SIGMA))])))
    return model.eval()


def test_linear_gaussian_vae_encoder_outputs_the_exact_posterior():
    lg = LinearGaussian()
    x = lg.sample_x(6)
    with torch.no_grad():
        mean, log_var = build_vae(lg).encode(torch.tensor(x, dtype=torch.float32))
    np.testing.assert_allclose(mean.numpy(), lg.posterior_mean(x), atol=1e-5)
    np.testing.assert_allclose(log_var.exp().numpy(), np.tile(lg.post_var, (6, 1)), rtol=1e-5)
    # Sanity of the reference: the ELBO of the exact posterior is log p(x).
    np.testing.assert_allclose(lg.elbo(x, lg.posterior_mean(x), np.tile(lg.post_var, (6, 1))),
                               lg.log_px(x), rtol=1e-10)


@pytest.mark.parametrize("k", [1, 2, 10, 100])
@pytest.mark.parametrize("iwae_batch", [1, 64, 100_000])
def test_iwae_with_exact_posterior_equals_exact_log_px_for_every_k(k, iwae_batch):
    # With q(z|x) = p(z|x) every importance weight equals p(x), so even k = 1 is exact, and the
    # chunking (iwae_batch // B samples per pass, at least 1) must not change anything.
    torch.manual_seed(0)
    lg = LinearGaussian()
    x = lg.sample_x(8)
    got = build_vae(lg, iwae_batch=iwae_batch).importance_weighted_log_px(torch.tensor(x, dtype=torch.float32), k)
    assert got.shape == (8,) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), lg.log_px(x), atol=1e-4)


def _iwae_estimates(model: VAE, x: np.ndarray, k: int, repeats: int) -> np.ndarray:
    """``repeats`` independent IWAE-k estimates per example, shape (repeats, len(x))."""
    x_rep = torch.tensor(np.tile(x, (repeats, 1)), dtype=torch.float32)
    return model.importance_weighted_log_px(x_rep, k).numpy().reshape(repeats, len(x))


def test_iwae_with_perturbed_encoder_converges_to_exact_log_px():
    torch.manual_seed(0)
    lg = LinearGaussian()
    x = lg.sample_x(12)
    exact = lg.log_px(x)
    model = build_vae(lg, mean_shift=0.4, var_factor=2.0)
    errors = {k: exact - _iwae_estimates(model, x, k, repeats)
              for k, repeats in [(1, 200), (10, 50), (100, 10), (1000, 2), (5000, 1)]}
    # The typical error |exact - estimate| shrinks with k (both the ~1/k bias and the spread) ...
    mean_abs = {k: float(np.abs(e).mean()) for k, e in errors.items()}
    assert mean_abs[1] > mean_abs[10] > mean_abs[100] > mean_abs[1000], mean_abs
    assert mean_abs[1] > 0.5, mean_abs  # the perturbation is big enough for the test to mean something
    assert mean_abs[1000] < 0.05 and mean_abs[5000] < 0.05, mean_abs
    # ... and for small k the estimate is biased low (a lower bound in expectation).
    bias = {k: float(e.mean()) for k, e in errors.items()}
    assert bias[1] > bias[10] > 0.05, bias
    assert abs(bias[1000]) < 0.05 and abs(bias[5000]) < 0.05, bias


def test_iwae_k1_is_the_elbo_and_lies_below_exact_log_px():
    # Averaged over draws, the k=1 estimate is the ELBO of the (perturbed) encoder, computable in
    # closed form, and it is a lower bound on log p(x).
    torch.manual_seed(0)
    lg = LinearGaussian()
    x = lg.sample_x(6)
    shift, var_factor = 0.4, 2.0
    model = build_vae(lg, mean_shift=shift, var_factor=var_factor)
    estimates = _iwae_estimates(model, x, 1, 4000)
    elbo = lg.elbo(x, lg.posterior_mean(x) + shift, np.tile(lg.post_var * var_factor, (6, 1)))
    standard_error = estimates.std(0) / np.sqrt(len(estimates))
    np.testing.assert_array_less(np.abs(estimates.mean(0) - elbo), 5 * standard_error + 1e-4)
    assert np.all(elbo < lg.log_px(x) - 0.1)
    assert estimates.mean() < lg.log_px(x).mean() - 0.1


def test_vae_elbo_terms_average_to_the_closed_form_elbo():
    # elbo_terms uses a one-sample reconstruction term plus the analytic KL: a different estimator
    # of the same ELBO, so its average must match the closed form too.
    torch.manual_seed(0)
    lg = LinearGaussian()
    x = lg.sample_x(4)
    model = build_vae(lg, mean_shift=-0.3, var_factor=0.5)
    repeats = 5000
    with torch.no_grad():
        terms = model.elbo_terms(torch.tensor(np.tile(x, (repeats, 1)), dtype=torch.float32))
    samples = terms["elbo"].double().numpy().reshape(repeats, 4)
    q_mean = lg.posterior_mean(x) - 0.3
    q_var = np.tile(lg.post_var * 0.5, (4, 1))
    kl = 0.5 * (q_mean**2 + q_var - 1 - np.log(q_var)).sum(1)
    np.testing.assert_allclose(terms["kl"][:4].numpy(), kl, rtol=1e-4)
    standard_error = samples.std(0) / np.sqrt(repeats)
    np.testing.assert_array_less(np.abs(samples.mean(0) - lg.elbo(x, q_mean, q_var)), 5 * standard_error + 1e-4)
