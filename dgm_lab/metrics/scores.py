"""The built-in feature metrics, FID, Inception Score, KID and precision/recall, by torch-fidelity's
own metric functions (``generated`` is torch-fidelity's input1, the real reference its input2).
Each implements ``dgm_lab.metrics.feature_metric.FeatureMetric`` and is declared by its
``_target_`` in conf/metrics/common.yaml. Scores are keyed by (name, statistic), a row of
``dgm_lab.metrics.specs`` and ``""`` or ``"std"``: names may contain underscores, so a logged key
is built by ``specs.metric_key``, never by splitting.

Numerics, checked in torch-fidelity 0.4.0: its FID takes sigma from ``np.cov`` (always float64)
but mu from ``np.mean`` in the features' dtype (float32 for InceptionV3), computes
tr sqrt(S1 S2) as the sum of square roots of the eigenvalues of S1 S2 in complex128 keeping the
real part, and returns a negative FID from round-off unchanged. Here features are cast to float64
before statistics (mu and sigma float64) and FID is clipped at 0; the raw value is kept in the
protocol (``fid_raw``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from dgm_lab.metrics.feature_metric import Reference
    from dgm_lab.metrics.settings import Settings

RNG_SEED = DEFAULTS["rng_seed"]  # torch-fidelity's seed for IS splits and KID subsets (2020)


def fid_statistics(features: torch.Tensor) -> dict:
    """{"mu": (D,), "sigma": (D, D)} float64 numpy, by torch-fidelity on float64 features."""
    return fid_features_to_statistics(features.double())


class FID:
    """Frechet distance of the feature Gaussians, against the cached reference mu and sigma;
    round-off below 0 is clipped (the raw value is ``fid_raw`` in the protocol)."""

    names = ("fid",)
    layer = "fid"
    needs_reference = True

    def compute(self, generated: torch.Tensor, reference: Reference, settings: Settings) -> tuple[dict, dict]:
        real = reference.gaussian or fid_statistics(reference.features)  # the cache holds it for this layer
        raw = fid_statistics_to_metric(fid_statistics(generated), real, verbose=False)[KEY_METRIC_FID]
        return {("fid", ""): max(raw, 0.0) if math.isfinite(raw) else raw}, {"fid_raw": raw}


class InceptionScore:
    """exp E_x KL(p(y|x) || p(y)) over ``metrics.isc_splits`` splits (capped at the sample count)."""

    names = ("is",)
    layer = "isc"
    needs_reference = False

    def compute(self, generated: torch.Tensor, reference: None, settings: Settings) -> tuple[dict, dict]:
        splits = min(settings.isc_splits, len(generated))
        out = isc_features_to_metric(generated, splits=splits, shuffle=True, rng_seed=RNG_SEED)
        return {("is", ""): out[KEY_METRIC_ISC_MEAN], ("is", "std"): out[KEY_METRIC_ISC_STD]}, {"isc_splits": splits}


class KID:
    """Unbiased MMD^2 with the cubic polynomial kernel, over ``metrics.kid_subsets`` subsets of
    ``metrics.kid_subset_size`` (capped at both set sizes)."""

    names = ("kid",)
    layer = "kid"
    needs_reference = True

    def compute(self, generated: torch.Tensor, reference: Reference, settings: Settings) -> tuple[dict, dict]:
        size = min(settings.kid_subset_size, len(generated), len(reference.features))
        out = kid_features_to_metric(generated.double(), reference.features.double(), kid_subsets=settings.kid_subsets,
                                     kid_subset_size=size, rng_seed=RNG_SEED, verbose=False)
        return ({("kid", ""): out[KEY_METRIC_KID_MEAN], ("kid", "std"): out[KEY_METRIC_KID_STD]},
                {"kid_subsets": settings.kid_subsets, "kid_subset_size": size})


class PrecisionRecall:
    """Precision: fraction of generated samples inside the real manifold (quality); recall: fraction
    of real samples inside the generated manifold (coverage); manifolds are unions of k-NN balls,
    k = ``metrics.prc_neighborhood``."""

    names = ("precision", "recall")
    layer = "prc"
    needs_reference = True

    def compute(self, generated: torch.Tensor, reference: Reference, settings: Settings) -> tuple[dict, dict]:
        out = prc_features_to_metric(generated.double(), reference.features.double(),
                                     prc_neighborhood=settings.prc_neighborhood, prc_batch_size=2000,
                                     save_cpu_ram=True, verbose=False)
        return ({("precision", ""): out[KEY_METRIC_PRECISION], ("recall", ""): out[KEY_METRIC_RECALL]},
                {"prc_neighborhood": settings.prc_neighborhood})
