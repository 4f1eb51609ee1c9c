"""The record stored next to every sample-quality score (summary.json, eval.json, W&B): what the
score depends on, so that two FIDs are compared only when their protocols agree."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch_fidelity

from dgm_lab.metrics import specs
from dgm_lab.metrics.extractors import Extractor
from dgm_lab.metrics.feature_metric import FeatureMetric
from dgm_lab.metrics.scores import RNG_SEED
from dgm_lab.metrics.settings import Settings


def versions() -> dict:
    import scipy

    import dgm_lab

    return {"torch_fidelity": torch_fidelity.__version__, "torch": torch.__version__, "numpy": np.__version__,
            "scipy": scipy.__version__, "dgm_lab": dgm_lab.__version__}


def protocol(metrics: dict[str, FeatureMetric], extractor: Extractor, settings: Settings, dataset: str, split: str, num_generated: int,
             num_real: int | None, generated_source: dict, cache: dict | None, details: dict) -> dict:
    """What a score depends on, recorded next to it in summary.json, eval.json and W&B; ``metrics``:
    {name: metric} of the feature metrics that were computed. Rows that plug-ins registered are
    recorded too (``registered_specs``), so that a later process can read their direction."""
    record = {
        "metrics": list(metrics), "num_generated": num_generated, "num_real": num_real,
        "reference": {"dataset": dataset, "split": split, "selection": "first num_real images, fixed order",
                      "images": "pixel values in [0, 1] (never binarized), uint8 round(255 x)"},
        "generated": {**generated_source, "quantization": "uint8 round(255 x)"},
        "feature_extractor": extractor.name, "weights": Path(extractor.weights).name,
        "weights_sha256": extractor.weights_sha256,
        "feature_layers": {name: extractor.layer(metric.layer) for name, metric in metrics.items()}, "resize": extractor.resize,
        "statistics": "float64 mean and covariance; tr sqrt(S1 S2) from eigenvalues (torch-fidelity); FID clipped at 0",
        "rng_seed": RNG_SEED, **details,
        "reference_cache": {k: v for k, v in (cache or {}).items() if k != "key"},
        "versions": versions(),
    }
    registered = {row: asdict(specs.BY_NAME[row]) for metric in metrics.values() for row in metric.names
                  if specs.BY_NAME[row] not in specs.SPECS}
    if registered:
        record["registered_specs"] = registered
    return record
