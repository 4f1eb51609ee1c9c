"""Which metric picks a run's best checkpoint (``monitor.metric`` / ``monitor.mode``).

``monitor.metric: null`` means the model class's ``default_monitor``: ``val/elbo`` for VAEs,
``val/pseudo_loglik`` for RBMs. A GAN reports no likelihood and its losses do not rank
generators, so its class names none (``default_monitor = (None, None)``) and the run picks a
sample-quality metric instead, in this order:

1. the sample-quality metric the run selected (``metrics=...``) and scores at validation
   (``metrics.every_n_epochs``): FID, else KID, else IS, with the extractor's suffix
   (``val/fid_lenet``; lower is better); the checkpoint is then considered at those validations only
   (``metrics.every_n_epochs=5``: every fifth), where the score exists;
2. on 2-D mixtures (``data=ring8|grid25``) with the mode-coverage callback: ``val/mode_score``
   (modes covered plus the high-quality fraction: modes alone tie at every mode early on);
3. on data a shipped LeNet scores (``mnist``, ``mnist_5k``, ``digits``, ``fashion_mnist``), with
   ``monitor.auto_quality: true`` and no metric selected: LeNet FID of ``monitor.auto_num_samples``
   samples, switched on here (a few seconds per validation on a CPU);
4. otherwise nothing: every checkpoint is the newest, and a warning names the way to a signal.

The same metric leads the closing headline of ``dgm-train`` and ranks runs in ``dgm-compare``.
"""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig, open_dict

from dgm_lab.data.contract import ModeMixtureData
from dgm_lab.metrics import specs
from dgm_lab.metrics.extractors import LENET_BY_DATASET

log = logging.getLogger("dgm_lab")

# Sample-quality metrics that can pick a checkpoint, in order of preference: (compute key, logged name).
QUALITY_MONITORS = (("fid", "fid"), ("kid", "kid"), ("is", "is"))


def fill_monitor(cfg: DictConfig, datamodule) -> None:
    """Fill ``cfg.monitor`` (and, for rule 3, ``cfg.metrics``) when ``monitor.metric`` is null."""
    if cfg.monitor.metric is not None:
        return
    metric, mode = hydra.utils.get_class(cfg.model._target_).default_monitor
    if metric is None:
        metric, mode = sample_quality_monitor(cfg, datamodule)
    with open_dict(cfg):  # Lightning's ModelCheckpoint wants a mode even when it monitors nothing
        cfg.monitor.metric, cfg.monitor.mode = metric, mode or "max"


def sample_quality_monitor(cfg: DictConfig, datamodule) -> tuple[str | None, str | None]:
    """The monitor of a model judged by its samples (rules 1 to 4 above)."""
    metrics = cfg.get("metrics")
    compute = dict((metrics or {}).get("compute") or {})
    selected = any(compute.get(switch) for switch, _ in QUALITY_MONITORS)
    every_n_epochs = (metrics or {}).get("every_n_epochs")
    if selected and every_n_epochs:
        suffix = "lenet" if str(metrics.get("feature_extractor", "")).startswith("lenet") else ""
        for switch, name in QUALITY_MONITORS:
            if compute.get(switch):
                key = specs.metric_key("val", name, suffix)
                _checkpoint_when_scored(cfg, int(every_n_epochs))
                return key, specs.direction(key)
    callbacks = cfg.get("callbacks") or {}
    if isinstance(datamodule, ModeMixtureData) and callbacks.get("mode_coverage"):
        return "val/mode_score", "max"
    dataset = getattr(datamodule, "name", "")
    if metrics is not None and not selected and cfg.monitor.get("auto_quality", True) and dataset in LENET_BY_DATASET:
        with open_dict(cfg):
            cfg.metrics.compute.fid = True
            cfg.metrics.feature_extractor = "lenet"
            cfg.metrics.num_samples = cfg.metrics.num_real = int(cfg.monitor.get("auto_num_samples", 2000))
        return "val/fid_lenet", "min"
    if selected:  # chosen for the test only (metrics.every_n_epochs=null): the user's protocol stays as set
        log.warning("the selected sample-quality metrics are not scored at validation (metrics.every_n_epochs "
                    "is null), so the best checkpoint is simply the newest; set metrics.every_n_epochs=N to "
                    "follow sample quality.")
        return None, None
    log.warning("no sample-quality metric for this run, so the best checkpoint is simply the newest; "
                "select one (metrics=inception metrics.inception_weights=<file>, or metrics=[fid] "
                "metrics.feature_extractor=<extractor>) to follow sample quality.")
    return None, None


def _checkpoint_when_scored(cfg: DictConfig, every_n_epochs: int) -> None:
    """The best checkpoint is chosen at the validations that score samples: Lightning's
    ModelCheckpoint stops a run whose monitored key is missing from a validation."""
    checkpoint = (cfg.get("callbacks") or {}).get("model_checkpoint")
    if checkpoint is not None and every_n_epochs > 1:
        with open_dict(cfg):
            checkpoint.every_n_epochs = every_n_epochs
