"""FID, Inception Score, KID and precision/recall from features, by torch-fidelity's own metric
functions (``generated`` is torch-fidelity's input1, the real reference its input2). Scores are
keyed by (name, statistic), a row of ``dgm_lab.metrics.specs`` and ``""`` or ``"std"``: names
may contain underscores, so a logged key is built by ``specs.metric_key``, never by splitting.

Numerics, checked in torch-fidelity 0.4.0: its FID takes sigma from ``np.cov`` (always float64)
but mu from ``np.mean`` in the features' dtype (float32 for InceptionV3), computes
tr sqrt(S1 S2) as the sum of square roots of the eigenvalues of S1 S2 in complex128 keeping the
real part, and returns a negative FID from round-off unchanged. Here features are cast to float64
before statistics (mu and sigma float64) and FID is clipped at 0; the raw value is kept in the
protocol (``fid_raw``).
"""

from __future__ import annotations

import math

import torch
from torch_fidelity.defaults import DEFAULTS
from torch_fidelity.metric_fid import (
    KEY_METRIC_FID,
    fid_features_to_statistics,
    fid_statistics_to_metric,
)
from torch_fidelity.metric_isc import (
    KEY_METRIC_ISC_MEAN,
    KEY_METRIC_ISC_STD,
    isc_features_to_metric,
)
from torch_fidelity.metric_kid import (
    KEY_METRIC_KID_MEAN,
    KEY_METRIC_KID_STD,
    kid_features_to_metric,
)
from torch_fidelity.metric_prc import (
    KEY_METRIC_PRECISION,
    KEY_METRIC_RECALL,
    prc_features_to_metric,
)

from dgm_lab.metrics.extractors import Extractor
from dgm_lab.metrics.settings import Settings

RNG_SEED = DEFAULTS["rng_seed"]  # torch-fidelity's seed for IS splits and KID subsets (2020)


def fid_statistics(features: torch.Tensor) -> dict:
    """{"mu": (D,), "sigma": (D, D)} float64 numpy, by torch-fidelity on float64 features."""
    return fid_features_to_statistics(features.double())


def compute_scores(metrics, generated: dict, reference: dict | None, extractor: Extractor,
                   settings: Settings) -> tuple[dict, dict]:
    """({(name, statistic): value}, details) from features, e.g. {("is", ""): 3.2, ("is", "std"): 0.1};
    ``generated`` is input1 (generated), ``reference`` input2 (real). Precision: fraction of generated samples inside the real manifold (quality);
    recall: fraction of real samples inside the generated manifold (coverage)."""
    scores, details = {}, {}
    n_gen = len(next(iter(generated.values())))
    if "is" in metrics:
        splits = min(settings.isc_splits, n_gen)
        out = isc_features_to_metric(generated[extractor.layer("is")], splits=splits, shuffle=True, rng_seed=RNG_SEED)
        scores.update({("is", ""): out[KEY_METRIC_ISC_MEAN], ("is", "std"): out[KEY_METRIC_ISC_STD]})
        details["isc_splits"] = splits
    if "fid" in metrics:
        stats_gen = fid_statistics(generated[extractor.layer("fid")])
        stats_real = {"mu": reference["fid_mu"].double().numpy(), "sigma": reference["fid_sigma"].double().numpy()}
        raw = fid_statistics_to_metric(stats_gen, stats_real, verbose=False)[KEY_METRIC_FID]
        scores["fid", ""] = max(raw, 0.0) if math.isfinite(raw) else raw  # round-off below 0 is a zero distance
        details["fid_raw"] = raw
    if "kid" in metrics:
        real = reference["features"][extractor.layer("kid")]
        size = min(settings.kid_subset_size, n_gen, len(real))
        out = kid_features_to_metric(generated[extractor.layer("kid")].double(), real.double(), kid_subsets=settings.kid_subsets,
                                     kid_subset_size=size, rng_seed=RNG_SEED, verbose=False)
        scores.update({("kid", ""): out[KEY_METRIC_KID_MEAN], ("kid", "std"): out[KEY_METRIC_KID_STD]})
        details.update(kid_subsets=settings.kid_subsets, kid_subset_size=size)
    if "prc" in metrics:
        real = reference["features"][extractor.layer("prc")]
        out = prc_features_to_metric(generated[extractor.layer("prc")].double(), real.double(),
                                     prc_neighborhood=settings.prc_neighborhood, prc_batch_size=2000,
                                     save_cpu_ram=True, verbose=False)
        scores.update({("precision", ""): out[KEY_METRIC_PRECISION], ("recall", ""): out[KEY_METRIC_RECALL]})
        details["prc_neighborhood"] = settings.prc_neighborhood
    return scores, details
