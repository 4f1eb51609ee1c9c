"""Build datamodule, model, callbacks, loggers and trainer from a config (all via ``_target_``)."""

from __future__ import annotations

import logging
import warnings

import hydra
import pytorch_lightning as pl
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf, open_dict

from dgm_lab.errors import ConfigError, UserError

log = logging.getLogger(__name__)


def instantiate(node, **kwargs):
    """``hydra.utils.instantiate`` with plain Python containers, surfacing our own errors unwrapped."""
    try:
        return hydra.utils.instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as error:
        cause = error.__cause__
        while cause is not None and not isinstance(cause, UserError) and cause.__cause__ is not None:
            cause = cause.__cause__
        if isinstance(cause, UserError):
            raise cause from None
        target = OmegaConf.select(node, "_target_", default="?") if isinstance(node, DictConfig) else "?"
        raise ConfigError(f"could not build {target}: {_cause(error)}") from error


def _cause(error: InstantiationException) -> str:
    """The underlying error of Hydra's message ("Error in call to target ...:\n<cause>\nfull_key: ..."),
    which says what is wrong (a missing package, a bad argument), on one line."""
    lines = [line.strip() for line in str(error).splitlines()[1:] if line.strip() and not line.startswith("full_key:")]
    return "; ".join(lines) or str(error).splitlines()[0]


def build_datamodule(cfg: DictConfig) -> pl.LightningDataModule:
    return instantiate(cfg.data)


def fill_data_fields(cfg: DictConfig, datamodule) -> None:
    """Shape fields are facts of the data: fill ``???`` model fields from the datamodule."""
    with open_dict(cfg):
        for key, value in (("data_shape", list(datamodule.data_shape)), ("num_classes", datamodule.num_classes)):
            if key in cfg.model.keys() and OmegaConf.is_missing(cfg.model, key):
                cfg.model[key] = value


def build_model(cfg: DictConfig) -> pl.LightningModule:
    model = instantiate(cfg.model)
    model.run_config = OmegaConf.to_container(cfg, resolve=True)
    return model


def build_callbacks(cfg: DictConfig) -> list[pl.Callback]:
    """The ``callbacks`` group, plus the run's own, which stay on with ``callbacks=none``: the
    sample-quality evaluator of the ``metrics`` group (inert unless a metric is selected) and
    the preemption handling (SIGTERM/SIGINT: an interrupted checkpoint and status) and the
    validation metrics a resumed run reports."""
    from dgm_lab.callbacks.validation_record import ValidationRecord
    from dgm_lab.preemption import Preemption

    callbacks = [instantiate(node) for node in (cfg.get("callbacks") or {}).values() if node and "_target_" in node]
    callbacks += [Preemption(), ValidationRecord()]
    if cfg.get("metrics") is not None:
        from dgm_lab.callbacks.sample_quality import SampleQuality

        callbacks.append(SampleQuality(OmegaConf.to_container(cfg.metrics, resolve=True)))
    return callbacks


def build_loggers(cfg: DictConfig) -> list:
    loggers = [pl.loggers.CSVLogger(save_dir=cfg.paths.output_dir, name="", version="")]
    for node in (cfg.get("logger") or {}).values():
        if not node or "_target_" not in node:
            continue
        logger = instantiate(node)
        if isinstance(logger, pl.loggers.WandbLogger):
            logger = start_wandb(logger, node)
        if logger is not None:
            loggers.append(logger)
    return loggers


def start_wandb(logger, node):
    """Start the W&B run now; if it cannot start (no network, bad key), fall back to offline."""
    try:
        logger.experiment  # noqa: B018 - forces wandb.init
        return logger
    except Exception as error:  # W&B must never stop training
        warnings.warn(f"W&B could not start ({error}); logging offline instead.", stacklevel=2)
        offline = OmegaConf.merge(node, {"mode": "offline"})
        try:
            logger = instantiate(offline)
            logger.experiment  # noqa: B018
            return logger
        except Exception as second:
            warnings.warn(f"W&B offline also failed ({second}); continuing without W&B.", stacklevel=2)
            return None


def build_trainer(cfg: DictConfig, callbacks, loggers) -> pl.Trainer:
    from dgm_lab.callbacks.divergence import TRAINER_SETTINGS

    node = OmegaConf.create(OmegaConf.to_container(cfg.trainer, resolve=True))
    for key in TRAINER_SETTINGS:  # the divergence guard's settings, kept with the trainer's for users
        node.pop(key, None)
    return instantiate(node, callbacks=callbacks, logger=loggers)
