"""FID, IS, KID and precision/recall as computed by the built-in feature metrics of
dgm_lab.metrics.scores (through torch-fidelity, built from their config as a run builds them), checked against independent numpy/scipy computations on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.spatial
import torch
from sklearn.metrics.pairwise import polynomial_kernel
from torch_fidelity.metric_fid import fid_statistics_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric

from dgm_lab.metrics.feature_metric import build_feature_metrics, compute_scores
from dgm_lab.metrics.scores import fid_statistics
from dgm_lab.metrics.settings import Settings


class FakeExtractor:
    """Stands in for a network: features are given directly ("features" for FID/KID/PR, "logits" for IS)."""

    def layer(self, metric: str) -> str:
        return "logits" if metric == "isc" else "features"


def scores(metrics, generated, real=None, **settings):
    """compute_scores on float64 feature arrays, with the reference statistics built as the cache builds them;
    the scores as {name: value} (the spreads, statistic "std", are left out)."""
    generated = {"features": torch.as_tensor(generated), "logits": torch.as_tensor(generated)}
    reference = None
    if real is not None:
        real = torch.as_tensor(real)
        stats = fid_statistics(real)  # as the reference cache stores them
        reference = {"features": {"features": real}, "fid_mu": torch.from_numpy(stats["mu"]),
                     "fid_sigma": torch.from_numpy(stats["sigma"])}
    settings = Settings.from_config({"compute": dict.fromkeys(metrics, True), **settings})
    found, details = compute_scores(build_feature_metrics(settings), generated, reference, FakeExtractor(), settings)
    return {name: value for (name, statistic), value in found.items() if not statistic}, details


def fid_closed_form(mu1, sigma1, mu2, sigma2) -> float:
    """|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)), with scipy's matrix square root."""
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def random_covariance(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


# -- FID ---------------------------------------------------------------------------------------
def test_fid_from_statistics_equals_closed_form():
    rng = np.random.default_rng(0)
    for d in (2, 8, 64):
        mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
        s1, s2 = random_covariance(rng, d), random_covariance(rng, d)
        got = fid_statistics_to_metric({"mu": mu1, "sigma": s1}, {"mu": mu2, "sigma": s2}, verbose=False)
        assert got["frechet_inception_distance"] == pytest.approx(fid_closed_form(mu1, s1, mu2, s2), rel=1e-9)
    # Commuting (diagonal) covariances: sum (sqrt(a) - sqrt(b))^2, no matrix square root needed.
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 16.0])
    got = fid_statistics_to_metric({"mu": np.zeros(3), "sigma": np.diag(a)}, {"mu": np.ones(3), "sigma": np.diag(b)}, False)
    assert got["frechet_inception_distance"] == pytest.approx(3 + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum(), rel=1e-12)


def test_fid_of_samples_from_two_gaussians_approaches_closed_form():
    rng = np.random.default_rng(1)
    d, n = 4, 40000
    mu1, mu2 = np.zeros(d), np.array([1.0, -1.0, 0.5, 0.0])
    s1, s2 = random_covariance(rng, d), random_covariance(rng, d)
    x = rng.multivariate_normal(mu1, s1, size=n).astype(np.float32)  # float32 like network features
    y = rng.multivariate_normal(mu2, s2, size=n).astype(np.float32)
    got, details = scores(["fid"], x, y)
    assert got["fid"] == pytest.approx(fid_closed_form(mu1, s1, mu2, s2), rel=0.03)
    assert details["fid_raw"] == got["fid"]


def test_fid_of_a_set_with_itself_is_zero_and_never_negative_or_nan():
    rng = np.random.default_rng(2)
    for n, d in ((300, 128), (2000, 16)):
        x = np.maximum(rng.normal(size=(n, d)), 0).astype(np.float32)  # ReLU-like, as LeNet features
        got, details = scores(["fid"], x, x)
        assert np.isfinite(details["fid_raw"]) and abs(details["fid_raw"]) < 1e-6
        assert 0.0 <= got["fid"] < 1e-6


def test_statistics_are_float64_even_for_float32_features():
    """Features far from 0 (float32 resolution 3e-5 at 300) and a small shift: a float32 mean, as
    torch-fidelity takes it from float32 features, would be off by about 1e-3 of the FID."""
    rng = np.random.default_rng(7)
    x = (300 + rng.normal(size=(2000, 8))).astype(np.float32)
    y = (x + 0.01).astype(np.float32)
    mean, cov = lambda a: a.astype(np.float64).mean(0), lambda a: np.cov(a.astype(np.float64), rowvar=False)
    expected = fid_closed_form(mean(x), cov(x), mean(y), cov(y))
    got, _ = scores(["fid"], x, y)
    assert got["fid"] == pytest.approx(expected, rel=1e-6)
    float32_means = fid_statistics_to_metric({"mu": x.mean(0), "sigma": cov(x)}, {"mu": y.mean(0), "sigma": cov(y)}, False)
    assert float32_means["frechet_inception_distance"] != pytest.approx(expected, rel=1e-6)  # the test can fail


# -- Inception Score ---------------------------------------------------------------------------
def test_is_of_uniform_predictions_is_one():
    got, _ = scores(["is"], np.zeros((200, 10)), isc_splits=10)
    assert got["is"] == pytest.approx(1.0, abs=1e-12)


def test_is_of_confident_balanced_predictions_is_number_of_classes():
    logits = 50.0 * np.eye(10)[np.arange(1000) % 10]
    got, _ = scores(["is"], logits, isc_splits=1)
    assert got["is"] == pytest.approx(10.0, rel=1e-9)
    # One class only: confident but not diverse.
    got, _ = scores(["is"], 50.0 * np.eye(10)[np.zeros(1000, dtype=int)], isc_splits=1)
    assert got["is"] == pytest.approx(1.0, rel=1e-9)


def test_is_equals_exp_mean_kl_on_random_logits():
    logits = np.random.default_rng(3).normal(scale=3, size=(500, 10))
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    expected = np.exp((p * (np.log(p) - np.log(p.mean(0)))).sum(1).mean())
    got, _ = scores(["is"], logits, isc_splits=1)
    assert got["is"] == pytest.approx(expected, rel=1e-9)


# -- KID ---------------------------------------------------------------------------------------
def mmd2_unbiased(x, y, kernel) -> float:
    """Unbiased MMD^2 (U-statistic within sets, all pairs across), written out independently."""
    m = len(x)
    kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
    return float((kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean())


def test_kid_equals_unbiased_mmd_with_cubic_kernel():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(300, 16)), rng.normal(0.3, 1.2, size=(300, 16))
    got, details = scores(["kid"], x, y, kid_subsets=1, kid_subset_size=300)  # one subset: all of both sets
    cubic = lambda a, b: polynomial_kernel(a, b, degree=3, gamma=1 / 16, coef0=1)  # noqa: E731
    assert details["kid_subset_size"] == 300
    assert got["kid"] == pytest.approx(mmd2_unbiased(x, y, cubic), rel=1e-10)


def test_kid_estimator_is_unbiased_on_a_known_case():
    """Linear kernel: MMD^2 = |mu_x - mu_y|^2 exactly. The biased (V-statistic) estimator would add
    (tr Sx + tr Sy) / m = 0.4 at subset size m = 10; the unbiased one averages to the true value."""
    rng = np.random.default_rng(5)
    shift = np.array([0.3, 0.4])  # |shift|^2 = 0.25
    x, y = rng.normal(size=(5000, 2)), rng.normal(size=(5000, 2)) + shift
    linear = {"kid_kernel_poly_degree": 1, "kid_kernel_poly_gamma": 1.0, "kid_kernel_poly_coef0": 0.0}
    for b, truth in ((y, 0.25), (rng.normal(size=(5000, 2)), 0.0)):
        out = kid_features_to_metric(torch.from_numpy(x), torch.from_numpy(b), kid_subsets=4000, kid_subset_size=10,
                                     verbose=False, **linear)
        standard_error = out["kernel_inception_distance_std"] / np.sqrt(4000)
        assert abs(out["kernel_inception_distance_mean"] - truth) < 5 * standard_error < 0.05


# -- precision / recall ------------------------------------------------------------------------
def prc_reference(generated, real, k):
    """Kynkaenniemi et al. 2019 by brute force: a point is inside a set's manifold when it lies within
    the k-th nearest-neighbour distance (self excluded) of some point of that set."""
    radii_real = np.sort(scipy.spatial.distance.cdist(real, real), 1)[:, k]
    radii_gen = np.sort(scipy.spatial.distance.cdist(generated, generated), 1)[:, k]
    d = scipy.spatial.distance.cdist(generated, real)
    precision = (d <= radii_real[None, :]).any(1).mean()
    recall = (d <= radii_gen[:, None]).any(0).mean()
    return precision, recall


def test_precision_recall_order_on_one_mode_of_ten():
    """Generated = one of ten real clusters: high precision (quality), low recall (coverage)."""
    rng = np.random.default_rng(6)
    centres = 10.0 * np.eye(10)
    real = np.concatenate([rng.normal(c, 1.0, size=(100, 10)) for c in centres])
    generated = rng.normal(centres[0], 1.0, size=(300, 10))
    got, _ = scores(["prc"], generated, real, prc_neighborhood=3)
    assert got["precision"] > 0.75 and got["recall"] < 0.15  # recall: about 1 mode in 10
    expected = prc_reference(generated, real, 3)
    assert (got["precision"], got["recall"]) == pytest.approx(expected, abs=1e-6)
    swapped, _ = scores(["prc"], real, generated, prc_neighborhood=3)  # the order is what gives them meaning
    assert swapped["precision"] < 0.15 and swapped["recall"] > 0.75
