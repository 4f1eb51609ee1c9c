"""The metric-spec table: what every logged metric is called, which way is better, how it is shown.

A logged key is ``<split>/<name>[_<extractor>][_<statistic>]``:

* ``split``: ``train``, ``val`` or ``test``;
* ``name``: a row of ``SPECS`` (``elbo``, ``nll_iwae``, ``fid``...);
* ``extractor``: the feature extractor of a sample-quality score, ``lenet`` for the shipped
  LeNets, ``cifar_resnet`` for the shipped CIFAR-10 ResNet and nothing for InceptionV3
  (``val/fid_lenet`` and ``val/fid_cifar_resnet`` are never comparable with ``val/fid``);
* ``statistic``: ``std`` (spread over splits/subsets), ``low``/``high`` (ends of an interval).

Logs, ``summary.json``, ``eval.json``, the closing headline of ``dgm-train`` and the comparison
report all read names, directions and formats from here. A metric that is not in the table (a new
model's own) still works: its direction comes from the name hints in ``NAME_HINTS``, else from the
checkpoint monitor's mode, and it is shown with three decimals. A plug-in sample-quality metric
adds its rows with ``register`` when it is built (``dgm_lab.metrics.feature_metric``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from dgm_lab.errors import ConfigError

SPLITS = ("train", "val", "test")
EXTRACTOR_SUFFIXES = ("lenet", "cifar_resnet")  # InceptionV3 scores carry no suffix
STATISTICS = ("std", "low", "high")


@dataclass(frozen=True)
class MetricSpec:
    """One metric.

    Args:
        name: the key without split, extractor and statistic (``fid``, ``loglik_ais``).
        direction: ``"max"`` or ``"min"`` when one value is better than another, None when the
            metric does not rank runs (the losses of an adversarial game, counters, log Z).
        unit: ``nats``, ``bits/dim``, ``fraction``... (per example unless said otherwise).
        headline: position in ``dgm-train``'s closing line (lower first); None: not shown there.
        digits: decimals when shown.
    """

    name: str
    direction: str | None
    unit: str = ""
    headline: int | None = None
    digits: int = 3
    description: str = ""


SPECS: tuple[MetricSpec, ...] = (
    # likelihood models (VAE, IWAE): nats per example unless the unit says otherwise
    MetricSpec("nll_iwae", "min", "nats", 10, description="-log p(x) by importance sampling (eval.iwae_k samples)"),
    MetricSpec("bpd_iwae", "min", "bits/dim", 12, description="nll_iwae in bits per dimension"),
    MetricSpec("elbo", "max", "nats", 20, description="evidence lower bound"),
    MetricSpec("bpd", "min", "bits/dim", 22, description="-elbo in bits per dimension"),
    MetricSpec("iwae_bound", "max", "nats", 24, description="k-sample importance weighted bound (model.k)"),
    MetricSpec("recon", "max", "nats", description="expected reconstruction log-likelihood"),
    MetricSpec("kl", None, "nats", description="KL(q(z|x) || p(z)); neither end is better"),
    MetricSpec("active_units", None, "units", 30, digits=0, description="latent units with Var_x E_q[z|x] > 0.01"),
    # Boltzmann machines
    MetricSpec("loglik_ais", "max", "nats", 10, description="log p(x) with log Z by AIS"),
    MetricSpec("loglik_bound_ais", "max", "nats", 10, description="variational lower bound on log p(x), log Z by AIS"),
    MetricSpec("log_z", None, "nats", 40, description="log partition function by AIS"),
    MetricSpec("log_z_lower_bound", None, "nats", description="max log p*(x) over test images: log Z is at least this"),
    MetricSpec("pseudo_loglik", "max", "nats", 26, description="pseudo-log-likelihood (every unit flipped)"),
    MetricSpec("recon_error", "min", "squared error", 28, description="squared reconstruction error summed over pixels"),
    MetricSpec("free_energy_gap", None, "nats", description="mean F(val) - mean F(train); growth means overfitting"),
    MetricSpec("free_energy_diff", None, "nats", description="mean F(data) - mean F(model samples)"),
    MetricSpec("stage", None, "", digits=0, description="training stage (DBN layer, DBM phase)"),
    # adversarial training: the losses of a game do not rank generators
    MetricSpec("d_loss", None, "", description="discriminator loss"),
    MetricSpec("g_loss", None, "", description="generator loss"),
    MetricSpec("real_score", None, "", description="mean discriminator score of real examples"),
    MetricSpec("fake_score", None, "", description="mean discriminator score of generated examples"),
    MetricSpec("gradient_penalty", None, "", description="WGAN-GP gradient penalty"),
    MetricSpec("generator_step", None, "iterations", digits=0, description="generator iterations so far"),
    # sample quality (dgm_lab.metrics.sample_quality): the extractor suffix says which network
    MetricSpec("fid", "min", "", 14, description="Frechet distance of feature Gaussians"),
    MetricSpec("is", "max", "", 16, description="Inception Score"),
    MetricSpec("kid", "min", "", 18, digits=4, description="kernel inception distance (unbiased MMD^2)"),
    MetricSpec("precision", "max", "fraction", 19, description="generated samples inside the real manifold"),
    MetricSpec("recall", "max", "fraction", 19, description="real samples inside the generated manifold"),
    MetricSpec("cas", "max", "fraction", 15, description="accuracy on real data of a classifier trained on samples"),
    MetricSpec("cas_real", "max", "fraction", 15, description="the same classifier trained on as many real images"),
    # 2-D mixtures
    MetricSpec("modes_covered", "max", "modes", 14, digits=0, description="modes with a high-quality sample"),
    MetricSpec("high_quality_frac", "max", "fraction", 15, description="samples within 3 std of a mode"),
    MetricSpec("mode_kl", "min", "nats", 16, description="KL(mode histogram || uniform)"),
    MetricSpec("mode_score", "max", "", 17, digits=3,
               description="modes_covered + high_quality_frac: more modes first, then sharper samples"),
    # generic
    MetricSpec("loss", "min", "", description="training objective"),
    MetricSpec("accuracy", "max", "fraction", 15, description="classification accuracy"),
    MetricSpec("error", "min", "fraction", 15, description="classification error"),
    MetricSpec("error_random_init", "min", "fraction", 16,
               description="the same classifier's error from random initialisation, same budget (dgm-finetune)"),
)
BY_NAME = {spec.name: spec for spec in SPECS}  # the built-in rows, then those added by ``register``
DIRECTIONS = ("max", "min", None)


def register(spec: MetricSpec) -> MetricSpec:
    """Add a row (a plug-in metric calls this when it is built), so that logged keys, directions,
    formats and headlines know it. Registering the same row again is a no-op; a row that already
    exists with other values, a built-in one above all, is refused: two meanings of one logged name
    would make runs incomparable."""
    if spec.direction not in DIRECTIONS:
        raise ConfigError(f"MetricSpec {spec.name!r}: direction must be 'max', 'min' or None, got {spec.direction!r}.")
    if not re.fullmatch(r"[a-z][a-z0-9_]*", spec.name):
        raise ConfigError(f"MetricSpec name {spec.name!r} must be lower-case letters, digits and underscores.")
    known = BY_NAME.get(spec.name)
    if known is not None and known != spec:
        kind = "built-in" if known in SPECS else "registered"
        raise ConfigError(f"metric {spec.name!r} is already a {kind} row of dgm_lab.metrics.specs with other values "
                          f"(direction {known.direction}, unit {known.unit!r}, headline {known.headline}, "
                          f"digits {known.digits}); give the new metric another name.")
    BY_NAME[spec.name] = spec
    return spec


# Fallback for names not in the table: the rightmost whole-word hint decides (``val/my_nll`` -> min).
NAME_HINTS = {
    "max": ("elbo", "acc", "accuracy", "modes_covered", "high_quality", "loglik", "log_likelihood", "is",
            "inception_score", "precision", "recall"),
    "min": ("nll", "bpd", "fid", "kid", "loss", "error", "err"),
}


@dataclass(frozen=True)
class MetricKey:
    """A logged key taken apart: ``val/is_lenet_std`` -> split val, name is, extractor lenet, statistic std."""

    key: str
    split: str | None
    name: str
    extractor: str = ""
    statistic: str = ""

    @property
    def spec(self) -> MetricSpec | None:
        return BY_NAME.get(self.name)


def metric_key(split: str, name: str, extractor: str = "", statistic: str = "") -> str:
    """The logged key: ``metric_key("val", "is", "lenet", "std") == "val/is_lenet_std"``."""
    if name not in BY_NAME:
        raise KeyError(f"metric {name!r} is not in dgm_lab.metrics.specs.SPECS")
    return f"{split}/{name}" + (f"_{extractor}" if extractor else "") + (f"_{statistic}" if statistic else "")


def parse(key: str) -> MetricKey:
    """Split a logged key into its parts; a name not in the table is kept whole."""
    split, _, rest = key.rpartition("/")
    split = split if split in SPLITS else (split or None)
    if rest in BY_NAME:
        return MetricKey(key, split, rest)
    name, statistic = rest, ""
    for candidate in STATISTICS:
        if name.endswith("_" + candidate) and name[: -len(candidate) - 1]:
            name, statistic = name[: -len(candidate) - 1], candidate
            break
    extractor = ""
    for candidate in EXTRACTOR_SUFFIXES:
        if name.endswith("_" + candidate) and name[: -len(candidate) - 1] in BY_NAME:
            name, extractor = name[: -len(candidate) - 1], candidate
            break
    if name in BY_NAME:
        return MetricKey(key, split, name, extractor, statistic)
    return MetricKey(key, split, rest)


def direction(key: str, monitor_modes: dict[str, str] | None = None) -> str | None:
    """``"max"`` when higher is better, ``"min"`` when lower is, None when values do not rank.

    Table rows decide first (a statistic such as ``_std`` never ranks), then name hints, then the
    mode of a checkpoint monitor that watches the key."""
    parts = parse(key)
    if parts.spec is not None:
        return None if parts.statistic == "std" else parts.spec.direction
    hits = []
    for way, hints in NAME_HINTS.items():
        for hint in hints:
            for match in re.finditer(rf"(?<![a-z0-9]){re.escape(hint)}(?![a-z0-9])", key.lower()):
                hits.append((match.end(), way))
    if hits:
        return max(hits)[1]
    return (monitor_modes or {}).get(key)


def format_value(key: str, value: float | None) -> str:
    """``value`` with the metric's decimals; non-finite values as they are."""
    if value is None:
        return "—"
    if not math.isfinite(value):
        return str(value)
    spec = parse(key).spec
    digits = spec.digits if spec is not None else 3
    return f"{value:.{digits}f}" if digits else f"{value:.0f}"


def headline(metrics: dict[str, float], limit: int = 8, monitor: str | None = None) -> list[str]:
    """The keys of a run's closing line, from what the model reported: the monitored metric (the
    one that picked the checkpoint) and its test counterpart first, then every table metric with a
    headline position (test before val, then by position), then test metrics the table does not
    know (a new model's own) after the known test metrics, at most ``limit``. Intervals and spreads
    are left out."""
    first = []
    if monitor:
        test_twin = "test/" + monitor.split("/", 1)[-1]
        first = [key for key in (test_twin, monitor) if key in metrics]
    ranked = []
    for key in metrics:
        parts = parse(key)
        if key in first or parts.statistic or parts.split not in ("val", "test"):
            continue
        spec = parts.spec
        if spec is not None and spec.headline is not None:
            ranked.append((parts.split != "test", 0, spec.headline, key))
        elif spec is None and parts.split == "test":
            ranked.append((False, 1, 0, key))
    return (first + [key for *_, key in sorted(ranked)])[:limit]
