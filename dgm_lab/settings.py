"""Typed run-level settings that no model or datamodule owns: the evaluation block and the
optimizer's numbers. Each check lives here once; ``dgm_lab.config.validate`` runs them before
anything is built, and the models read their evaluation settings through the same class."""

from __future__ import annotations

from dataclasses import dataclass

from dgm_lab.errors import require


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def not_a_path(name: str, value) -> str:
    """The sentence for a path setting that Hydra read as a number or bool (``resume=-1``)."""
    return (f"{name} must be a path (a file or folder name), got {name}={value}; quote a name that looks like a "
            f"number: {name}=\"'{value}'\".")


def check_paths(cfg, *names: str) -> None:
    """Path settings (``ckpt_path=``, ``resume=``, ``output=``, ``images=``): Hydra parses
    ``ckpt_path=0.5`` or ``resume=-1`` as numbers, which would fail deep inside ``pathlib``."""
    for name in names:
        value = cfg.get(name)
        require(value is None or isinstance(value, str), not_a_path(name, value))


def check_seed(seed) -> None:
    """``seed``: an integer numpy accepts (pl.seed_everything would fail on ``seed=abc`` or -1 deep inside)."""
    require(isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < 2**32,
            f"seed must be an integer from 0 to {2**32 - 1}, got seed={seed!r}.")


@dataclass(frozen=True)
class SamplingSettings:
    """The settings of ``dgm-sample`` (conf/sample.yaml): every count at least 1."""

    num_samples: int = 64
    batch_size: int = 1000
    grid_size: int = 100
    gibbs_steps: int | None = None
    label: int | None = None

    def __post_init__(self):
        for name in ("num_samples", "batch_size", "grid_size"):
            value = getattr(self, name)
            require(_positive_int(value), f"{name} must be a positive integer, got {name}={value!r}.")
        require(self.gibbs_steps is None or _positive_int(self.gibbs_steps),
                f"gibbs_steps must be a positive integer (or null for the run's own), got gibbs_steps={self.gibbs_steps!r}.")
        require(self.label is None or (isinstance(self.label, int) and not isinstance(self.label, bool) and self.label >= 0),
                f"label must be a class index (0, 1, ...), got label={self.label!r}.")

    @classmethod
    def from_config(cls, cfg) -> SamplingSettings:
        check_seed(cfg.get("seed"))
        return cls(**{name: cfg.get(name, field.default) for name, field in cls.__dataclass_fields__.items()})


@dataclass(frozen=True)
class EvaluationSettings:
    """The ``eval`` block of conf/train.yaml and conf/eval.yaml (conf/evaluation/default.yaml).

    Args:
        iwae_k: importance samples per test example for ``test/nll_iwae``.
        iwae_batch: decoder passes per chunk of the IWAE estimate (a memory bound).
        ais_num_betas: AIS temperatures for log Z of Boltzmann machines (at least 3).
        ais_num_runs: independent AIS runs; their spread gives the error bar (at least 2).
    """

    iwae_k: int = 200
    iwae_batch: int = 50000
    ais_num_betas: int = 1000
    ais_num_runs: int = 20

    def __post_init__(self):
        require(_positive_int(self.iwae_k), f"eval.iwae_k must be a positive integer, got eval.iwae_k={self.iwae_k!r}.")
        require(_positive_int(self.iwae_batch), f"eval.iwae_batch must be a positive integer, got {self.iwae_batch!r}.")
        require(isinstance(self.ais_num_betas, int) and self.ais_num_betas >= 3,
                 f"eval.ais.num_betas must be at least 3, got {self.ais_num_betas!r}.")
        require(isinstance(self.ais_num_runs, int) and self.ais_num_runs >= 2,
                 f"eval.ais.num_runs must be at least 2 (for the error bar), got {self.ais_num_runs!r}.")

    @classmethod
    def from_config(cls, node: dict | None) -> EvaluationSettings:
        """From the ``eval`` node (a dict or DictConfig); missing keys take the defaults."""
        node = dict(node or {})
        ais = dict(node.get("ais") or {})
        defaults = cls.__dataclass_fields__
        return cls(iwae_k=node.get("iwae_k", defaults["iwae_k"].default),
                   iwae_batch=node.get("iwae_batch", defaults["iwae_batch"].default),
                   ais_num_betas=ais.get("num_betas", defaults["ais_num_betas"].default),
                   ais_num_runs=ais.get("num_runs", defaults["ais_num_runs"].default))


@dataclass(frozen=True)
class OptimizerSettings:
    """The numbers of the ``optimizer`` group that every torch optimizer shares."""

    lr: float
    weight_decay: float = 0.0

    def __post_init__(self):
        require(isinstance(self.lr, int | float) and self.lr > 0,
                 f"optimizer.lr must be positive, got optimizer.lr={self.lr!r}.")
        require(isinstance(self.weight_decay, int | float) and self.weight_decay >= 0,
                 f"optimizer.weight_decay must be non-negative, got optimizer.weight_decay={self.weight_decay!r}.")

    @classmethod
    def from_config(cls, node) -> OptimizerSettings:
        node = dict(node or {})
        return cls(lr=node.get("lr", 1e-3), weight_decay=node.get("weight_decay", 0.0) or 0.0)


def check_trainer_limits(node) -> None:
    """``trainer.max_epochs``: at least 1, or -1 / null for no limit."""
    max_epochs = dict(node or {}).get("max_epochs")
    require(max_epochs is None or (isinstance(max_epochs, int) and (max_epochs == -1 or max_epochs >= 1)),
             f"trainer.max_epochs must be >= 1 (or -1 for no limit), got trainer.max_epochs={max_epochs!r}.")
