"""Build datamodule, model, callbacks, loggers and trainer from a config (all via ``_target_``)."""

from __future__ import annotations

import logging
import warnings

import hydra
import pytorch_lightning as pl
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf, open_dict

from dgm_lab import performance
from dgm_lab.csv_logger import AppendingCSVLogger
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
    """What went wrong underneath Hydra's wrapper, on one line: the innermost exception of the
    chain (a missing package as "<name> is not installed: pip install <name>"), else Hydra's own
    message without its ``full_key:`` line."""
    cause = error
    while cause.__cause__ is not None:
        cause = cause.__cause__
    if cause is not error:
        missing = _missing_package(cause)
        if missing:
            return f"{missing} is not installed: pip install {missing}"
        text = "; ".join(line.strip() for line in str(cause).splitlines() if line.strip())
        return f"{type(cause).__name__}: {text}" if text else type(cause).__name__
    lines = [line.strip() for line in str(error).splitlines()[1:] if line.strip() and not line.startswith("full_key:")]
    return "; ".join(lines) or str(error).splitlines()[0]


def _missing_package(cause: BaseException) -> str | None:
    """The pip name of a missing optional package (TensorBoard's logger says it in words only)."""
    if not isinstance(cause, ImportError):
        return None
    if "tensorboard" in str(cause).lower():
        return "tensorboard"
    return cause.name.split(".")[0] if getattr(cause, "name", None) else None


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


def build_callbacks(cfg: DictConfig, model=None, datamodule=None) -> list[pl.Callback]:
    """The ``callbacks`` group, plus the sample-quality evaluator of the ``metrics`` group (inert
    unless a metric is selected), which is the run's own and stays on with ``callbacks=none``.
    Given the model and data, a callback whose ``applies_to(model, datamodule)`` is false (mode
    coverage on images, weight filters of a VAE) is left out: Lightning calls every hook of every
    callback on every step, inert or not. The run's own callbacks: ``FollowMovedRun`` keeps a resumed
    copy of a run folder to its own checkpoints, ``Preemption`` turns SIGTERM/SIGINT into an
    interrupted checkpoint and status, ``ValidationRecord`` carries the validation metrics a resumed
    run reports."""
    from dgm_lab.callbacks.moved_run import FollowMovedRun
    from dgm_lab.callbacks.validation_record import ValidationRecord
    from dgm_lab.preemption import Preemption

    callbacks = [instantiate(node) for node in (cfg.get("callbacks") or {}).values() if node and "_target_" in node]
    callbacks += [FollowMovedRun(), Preemption(), ValidationRecord()]
    if cfg.get("metrics") is not None:
        from dgm_lab.callbacks.sample_quality import SampleQuality

        callbacks.append(SampleQuality(OmegaConf.to_container(cfg.metrics, resolve=True)))
    if model is not None:
        callbacks = [c for c in callbacks if not hasattr(c, "applies_to") or c.applies_to(model, datamodule)]
    return callbacks


def build_loggers(cfg: DictConfig) -> list:
    loggers = [AppendingCSVLogger(save_dir=cfg.paths.output_dir, name="", version="")]
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
    # Lightning passes anonymous=None, which today's wandb answers with a deprecation warning on every run
    logger._wandb_init.pop("anonymous", None)
    try:
        logger.experiment  # noqa: B018 - forces wandb.init
        return logger
    except Exception as error:  # W&B must never stop training
        warnings.warn(f"W&B could not start ({error}); logging offline instead.", stacklevel=2)
        offline = OmegaConf.merge(node, {"mode": "offline"})
        try:
            logger = instantiate(offline)
            logger._wandb_init.pop("anonymous", None)
            logger.experiment  # noqa: B018
            return logger
        except Exception as second:
            warnings.warn(f"W&B offline also failed ({second}); continuing without W&B.", stacklevel=2)
            return None


def build_trainer(cfg: DictConfig, callbacks, loggers) -> pl.Trainer:
    """The Lightning Trainer of ``cfg.trainer``, without dgm-lab's own settings: the speed options
    (``performance``) and the divergence guard's (kept with the trainer's for users)."""
    from dgm_lab.callbacks.divergence import TRAINER_SETTINGS

    node = OmegaConf.create(performance.lightning_arguments(OmegaConf.to_container(cfg.trainer, resolve=True)))
    for key in TRAINER_SETTINGS:
        node.pop(key, None)
    if node.get("enable_progress_bar") is False:  # Lightning refuses a bar callback beside it: drop callbacks.progress_bar
        callbacks = [c for c in callbacks if not isinstance(c, pl.callbacks.ProgressBar)]
    return instantiate(node, callbacks=callbacks, logger=loggers)


def apply_performance_options(cfg: DictConfig, model: pl.LightningModule) -> None:
    """``trainer.compile``, ``trainer.channels_last``, ``trainer.matmul_precision`` (``dgm_lab.performance``)."""
    performance.apply(OmegaConf.to_container(cfg.trainer, resolve=True), model)
