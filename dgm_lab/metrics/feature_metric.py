"""What a sample-quality metric computed from extractor features is, and how one is built and run.

A feature metric is any object with the four members of ``FeatureMetric``; it is named in the
``metrics.implementations`` config node (name -> ``{_target_: ..., its own options}``) and switched
on by ``metrics.compute.<name>``, so a new metric is one module plus one YAML
(conf/metrics/common.yaml declares the built-ins, ``dgm_lab.metrics.scores``; docs/extending.md
adds density and coverage from outside the package). Its spec-table rows (direction, format,
headline) come from ``dgm_lab.metrics.specs``: a new metric ``specs.register``s its own when built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import hydra
import torch

from dgm_lab.errors import ConfigError, UserError
from dgm_lab.metrics import specs
from dgm_lab.metrics.extractors import TF_METRICS

if TYPE_CHECKING:
    from dgm_lab.metrics.extractors import Extractor
    from dgm_lab.metrics.settings import Settings

Scores = dict[tuple[str, str], float]  # {(spec-table row, "" or a statistic such as "std"): value}


@dataclass(frozen=True)
class Reference:
    """The real reference images at one metric's layer.

    Args:
        features: (M, D) float32, as the extractor gave them (cast to float64 before statistics).
        gaussian: float64 ``{"mu": (D,), "sigma": (D, D)}`` numpy arrays of ``features`` where the
            reference cache holds them (the FID layer), else None.
    """

    features: torch.Tensor
    gaussian: dict | None = None


@runtime_checkable
class FeatureMetric(Protocol):
    """A score of generated images from the features of one extractor layer.

    Attributes:
        names: the spec-table rows it reports (``("precision", "recall")``); rows that are not
            built in are ``specs.register``ed in the metric's ``__init__``.
        layer: the torch-fidelity metric whose default layer of the extractor it reads: ``fid``,
            ``kid`` or ``prc`` (LeNet: ``features``, InceptionV3: ``2048``) or ``isc`` (the logits).
        needs_reference: whether ``compute`` gets the real reference (else None).
    """

    names: tuple[str, ...]
    layer: str
    needs_reference: bool

    def compute(self, generated: torch.Tensor, reference: Reference | None,
                settings: Settings) -> tuple[Scores, dict]:
        """``generated``: (N, D) float32 features at ``layer`` (generated images are torch-fidelity's
        input1, the real ones its input2); ``settings``: the ``metrics`` node. Returns the scores by
        (row, statistic) and details for the protocol record (the settings that shaped them)."""
        ...


def build_feature_metrics(settings: Settings) -> dict[str, FeatureMetric]:
    """{name: metric} of the selected feature metrics, built from ``metrics.implementations``;
    a node that does not build or does not fit the interface fails in one sentence."""
    return {name: _build(name, settings.implementations[name]) for name in settings.feature_metrics}


def _build(name: str, node: dict) -> FeatureMetric:
    where = f"metrics.implementations.{name}"
    try:
        metric = hydra.utils.instantiate(node, _convert_="all")
    except Exception as error:  # Hydra wraps the cause: a missing module, a bad argument
        cause = error
        while cause.__cause__ is not None and not isinstance(cause, UserError):
            cause = cause.__cause__
        if isinstance(cause, UserError):
            raise cause from None
        reason = f"{type(cause).__name__}: {str(cause).splitlines()[0]}" if str(cause) else type(cause).__name__
        raise ConfigError(f"{where} could not build {node.get('_target_')} ({reason}); check its _target_ and "
                          "options, and that its package is importable (PYTHONPATH).") from error
    if not isinstance(metric, FeatureMetric):
        raise ConfigError(f"{where}: {node['_target_']} is not a feature metric; it needs names, layer, "
                          "needs_reference and compute (dgm_lab.metrics.feature_metric.FeatureMetric).")
    if metric.layer not in TF_METRICS:
        raise ConfigError(f"{where}: layer must be one of {', '.join(TF_METRICS)}, got {metric.layer!r}.")
    unknown = [row for row in metric.names if row not in specs.BY_NAME]
    if unknown:
        raise ConfigError(f"{where} reports {', '.join(unknown)}, which dgm_lab.metrics.specs does not know; "
                          "call specs.register(MetricSpec(...)) in its __init__.")
    return metric


def compute_scores(metrics: dict[str, FeatureMetric], generated: dict[str, torch.Tensor], reference: dict | None,
                   extractor: Extractor, settings: Settings) -> tuple[Scores, dict]:
    """Every metric on its layer's features: ``generated`` and ``reference["features"]`` are
    {layer: (N, D)}; ``reference`` is the cache entry (``dgm_lab.metrics.reference_cache``)."""
    scores, details = {}, {}
    for name, metric in metrics.items():
        layer = extractor.layer(metric.layer)
        real = None
        if metric.needs_reference:
            gaussian = None
            if layer == extractor.layer("fid"):  # the cache keeps the Gaussian of the FID layer
                gaussian = {"mu": reference["fid_mu"].double().numpy(), "sigma": reference["fid_sigma"].double().numpy()}
            real = Reference(reference["features"][layer], gaussian)
        found, more = metric.compute(generated[layer], real, settings)
        strays = sorted({row for row, _ in found} - set(metric.names))
        if strays:
            raise ConfigError(f"metrics.implementations.{name} returned {', '.join(strays)}, "
                              f"which are not among its names ({', '.join(metric.names)}).")
        scores.update(found)
        details.update(more)
    return scores, details


def reference_layers(metrics: dict[str, FeatureMetric], extractor: Extractor) -> list[str]:
    """Layers the reference cache entry serves: the two-sample built-ins' (so that every selection of
    them shares one entry) and those of the selected metrics that read the reference."""
    return sorted({*extractor.reference_layers, *(extractor.layer(m.layer) for m in metrics.values() if m.needs_reference)})
