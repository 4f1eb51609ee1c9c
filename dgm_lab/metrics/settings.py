"""The ``metrics`` config node as a typed record, validated once: every sample-quality default
lives here (conf/metrics/common.yaml documents the same fields for the command line)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from dgm_lab.errors import ConfigError
from dgm_lab.metrics import cifar_resnet, lenet

# The built-in feature metrics, as conf/metrics/common.yaml declares them (metrics.implementations):
# name -> the node Hydra builds (dgm_lab.metrics.feature_metric). Kept here too so that Python callers
# passing no implementations get them (tests/test_feature_metric.py checks that both agree); a new
# metric's YAML adds its own entry beside them, and nothing here changes.
BUILT_IN = {"fid": {"_target_": "dgm_lab.metrics.scores.FID"},
            "is": {"_target_": "dgm_lab.metrics.scores.InceptionScore"},
            "kid": {"_target_": "dgm_lab.metrics.scores.KID"},
            "prc": {"_target_": "dgm_lab.metrics.scores.PrecisionRecall"}}
CAS = "cas"  # classification accuracy score (dgm_lab.metrics.cas): a model metric, not a feature one
INCEPTION = "inception-v3-compat"  # torch-fidelity's name of the TF-compatible InceptionV3
# metrics.feature_extractor: "auto" picks the shipped extractor of the dataset (a LeNet or the CIFAR
# ResNet), "lenet" the shipped LeNet of the dataset (dgm_lab.metrics.extractors); the others name one.
AUTO, LENET = "auto", "lenet"
FEATURE_EXTRACTORS = (AUTO, LENET, *lenet.LENETS, cifar_resnet.NAME, INCEPTION)


@dataclass
class Settings:
    """The ``metrics`` config node (conf/metrics/common.yaml documents every field)."""

    compute: dict = field(default_factory=dict)
    implementations: dict = field(default_factory=lambda: {name: dict(node) for name, node in BUILT_IN.items()})
    feature_extractor: str = AUTO
    lenet_weights: str | None = None
    cifar_resnet_weights: str | None = None
    inception_weights: str | None = None
    download: bool = True
    on_missing_weights: str = "error"
    num_samples: int = 10000
    num_real: int = 10000
    reference_split: str = "val"
    seed: int = 0
    batch_size: int = 500
    isc_splits: int = 10
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    prc_neighborhood: int = 3
    cache_dir: str | None = None
    every_n_epochs: int | None = 1
    every_n_steps: int | None = None
    on_test: bool = True
    cas_num_samples: int = 10000
    cas_epochs: int = 5

    @classmethod
    def from_config(cls, node) -> Settings:
        node = dict(node or {})
        unknown = sorted(set(node) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"unknown metrics setting(s) {', '.join(unknown)}; see conf/metrics/common.yaml.")
        declared = {**BUILT_IN, **dict(node.pop("implementations", None) or {})}  # a YAML adds to the built-ins
        settings = cls(**node, implementations={name: _implementation(name, value) for name, value in declared.items()})
        settings.compute = {k: bool(v) for k, v in dict(settings.compute or {}).items()}
        bad = sorted(set(settings.compute) - set(settings.choices))
        if bad:
            raise ConfigError(f"unknown metric(s) {', '.join(bad)}; choose from metrics=[{','.join(settings.choices)}].")
        if settings.on_missing_weights not in ("error", "skip"):
            raise ConfigError(f"metrics.on_missing_weights must be error or skip, got {settings.on_missing_weights!r}.")
        if settings.feature_extractor not in FEATURE_EXTRACTORS:
            raise ConfigError(f"metrics.feature_extractor must be {', '.join(FEATURE_EXTRACTORS[:-1])} or "
                              f"{FEATURE_EXTRACTORS[-1]}, got {settings.feature_extractor!r}.")
        for key in ("num_samples", "num_real", "batch_size", "isc_splits", "kid_subsets", "kid_subset_size",
                    "prc_neighborhood", "cas_num_samples", "cas_epochs"):
            if not isinstance(getattr(settings, key), int) or getattr(settings, key) < 1:
                raise ConfigError(f"metrics.{key} must be a positive integer, got {getattr(settings, key)!r}.")
        if settings.num_samples < 2 or settings.num_real < 2:
            raise ConfigError("metrics.num_samples and metrics.num_real must be at least 2 (covariances).")
        return settings

    @property
    def choices(self) -> tuple[str, ...]:
        """Every name ``compute`` may switch on: the declared feature metrics, then CAS."""
        return (*self.implementations, CAS)

    @property
    def selected(self) -> tuple[str, ...]:
        return tuple(m for m in self.choices if self.compute.get(m))

    @property
    def feature_metrics(self) -> tuple[str, ...]:
        return tuple(m for m in self.implementations if self.compute.get(m))


def _implementation(name: str, node) -> dict:
    """One ``metrics.implementations`` entry, checked: a mapping with a ``_target_``."""
    if name == CAS:
        raise ConfigError("metrics.implementations.cas: cas is the classification accuracy score of dgm-eval; "
                          "give the feature metric another name.")
    if not isinstance(node, dict) or not isinstance(node.get("_target_"), str):
        raise ConfigError(f"metrics.implementations.{name} must be a mapping with _target_: <module.Class of the "
                          f"metric>, got {node!r}.")
    return dict(node)
