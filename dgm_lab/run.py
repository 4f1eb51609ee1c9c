"""The training run: build everything from the config, fit, test, write ``summary.json``.

``train(cfg)`` is what ``dgm-train`` calls and what tests call with a composed config; it
returns the ``Summary``, whose ``metrics`` a sweeper can optimize. The files it writes are named
in ``dgm_lab.run_folder``.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from pathlib import Path
from typing import Protocol, runtime_checkable

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only

from dgm_lab import builders, run_lock
from dgm_lab.callbacks.validation_record import carried_metrics
from dgm_lab.checkpoints import check_weights_fit, load_checkpoint
from dgm_lab.config import validate
from dgm_lab.data.contract import InMemoryImageData, PartlyLabeled
from dgm_lab.errors import CheckpointError, ConfigError, DivergedError
from dgm_lab.files import write_atomically
from dgm_lab.monitor import fill_monitor
from dgm_lab.preemption import interruption
from dgm_lab.run_folder import RunFolder, Summary, scalar_metrics

log = logging.getLogger("dgm_lab")

# Lightning's advice to add DataLoader workers does not apply to in-memory tensor batches.
warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*LeafSpec.*")
warnings.filterwarnings("ignore", ".*exists and is not empty.*")  # CSV logger in the Hydra run folder
warnings.filterwarnings("ignore", ".*smaller than the logging interval.*")


@runtime_checkable
class ReportsDiagnostics(Protocol):
    """A callback with non-scalar results for summary.json (histograms, score protocols)."""

    diagnostics: dict


def train(cfg: DictConfig) -> Summary:
    """Fit and test the configured model; return the summary also written to summary.json.

    Everything that can refuse the run is checked before anything is written: the config, the
    run folder's lock (one writer per folder), a fresh run into a folder that holds one, and
    the checkpoint to continue from."""
    validate(cfg)
    folder = RunFolder(cfg.paths.output_dir)
    if rank_zero_only.rank != 0:  # DDP ranks > 0 run inside rank 0's hold of the folder
        return _train(cfg, folder, _resume_checkpoint(cfg, folder))
    with run_lock.hold(folder.path):
        if not cfg.get("resume") and folder.holds_run():
            raise ConfigError(f"{folder.path} already holds a run ({folder.config.name}, {folder.checkpoints.name}/); "
                              f"continue it with resume={folder.path}, or leave hydra.run.dir out for a new folder.")
        return _train(cfg, folder, _resume_checkpoint(cfg, folder))


def _train(cfg: DictConfig, folder: RunFolder, ckpt_path: str | None) -> Summary:
    started = time.time()
    folder.path.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)

    datamodule = builders.build_datamodule(cfg)
    builders.fill_data_fields(cfg, datamodule)
    fill_monitor(cfg, datamodule)
    OmegaConf.resolve(cfg)  # one resolution: run ids and paths are fixed from here on
    _save_resolved(cfg, folder)
    log.info("%s on %s, best checkpoint by %s; run folder %s", cfg.model._target_.rpartition(".")[2],
             getattr(datamodule, "name", type(datamodule).__name__),
             f"{cfg.monitor.metric} ({cfg.monitor.mode})" if cfg.monitor.metric else "nothing (the newest)", folder.path)

    summary = Summary(seed=cfg.seed, run_dir=str(folder.path), data=_data_record(datamodule))
    trainer = model = None
    callbacks: list = []
    try:
        model = builders.build_model(cfg)
        builders.apply_performance_options(cfg, model)
        callbacks = builders.build_callbacks(cfg, model, datamodule)
        loggers = builders.build_loggers(cfg)
        trainer = builders.build_trainer(cfg, callbacks, loggers)
        for logger in loggers:
            logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        if ckpt_path:  # a checkpoint of another model or size: one sentence, before any step
            check_weights_fit(load_checkpoint(ckpt_path, cfg.get("allow_targets")), model, ckpt_path)
        fit_started = time.time()
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        summary.timing = _fit_timing(time.time() - fit_started, model)
        summary.metrics.update(scalar_metrics(trainer.callback_metrics))
        if cfg.get("test"):
            best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
            results = trainer.test(model, datamodule=datamodule, ckpt_path=best or None,
                                   weights_only=True, verbose=False)
            summary.metrics.update(scalar_metrics(results[0] if results else {}))
        summary.status = "completed"
    except DivergedError as error:
        summary.status, summary.error = "diverged", str(error)
        raise
    except BaseException as error:
        interrupted = interruption(error, callbacks, str(folder.path))
        if interrupted is not None:
            summary.status, summary.error = "interrupted", str(interrupted)
            raise interrupted from None
        summary.status, summary.error = "failed", f"{type(error).__name__}: {error}"
        raise
    finally:
        if trainer is not None:
            summary.metrics = {**carried_metrics(callbacks), **scalar_metrics(trainer.callback_metrics), **summary.metrics}
            summary.best = _best(trainer)
            summary.global_step = trainer.global_step
        summary.diagnostics = _diagnostics(model, callbacks)
        summary.wall_time_s = round(time.time() - started, 2)
        summary.config = OmegaConf.to_container(cfg, resolve=True)
        if trainer is None or trainer.is_global_zero:
            folder.write_summary(summary)
        _finish_wandb()
    return summary


def _data_record(datamodule) -> dict:
    """What the run was trained on, for summary.json: the class names give labels their meaning."""
    record = {"name": getattr(datamodule, "name", type(datamodule).__name__),
              "shape": list(getattr(datamodule, "data_shape", []))}
    if isinstance(datamodule, InMemoryImageData):
        record["class_names"] = list(datamodule.class_names)
    if isinstance(datamodule, PartlyLabeled) and (datamodule.num_labeled or datamodule.labeled_per_batch):
        record["labels"] = datamodule.label_record()  # loads the data: a bad num_labeled stops the run here
    return record


def _diagnostics(model, callbacks: list) -> dict:
    """The model's own diagnostics (KL per dimension, AIS) and what the callbacks measured."""
    out = dict(model.diagnostics) if model is not None else {}
    for callback in callbacks:
        if isinstance(callback, ReportsDiagnostics):
            out.update(callback.diagnostics)
    return out


def _fit_timing(seconds: float, model) -> dict:
    """Training throughput for comparing runs (DDP vs one process, presets): one iteration is one
    optimizer step, or one generator iteration for GANs, whose global_step counts every optimizer.
    ``ms_per_iteration`` counts training only: the time inside validation loops (with the sample
    grids, sample-quality scores and checkpoints written there) is ``validation_s``, left out of it.
    A resumed run counts from its checkpoint."""
    iterations = model.training_iterations - getattr(model, "iterations_at_fit_start", 0)
    validation = min(seconds, getattr(model, "validation_seconds", 0.0))
    timing = {"fit_s": round(seconds, 2), "validation_s": round(validation, 2), "iterations": int(iterations)}
    if iterations > 0:
        timing["ms_per_iteration"] = round(1000 * (seconds - validation) / iterations, 3)
    return timing


def _save_resolved(cfg: DictConfig, folder: RunFolder) -> None:
    """config.yaml: written once by a fresh run; a resume rewrites it with the settings it applied
    (listed under ``resumed``), so the file always says how the run's checkpoints were trained.
    Written atomically: a kill leaves the old file or the new one, never half of one."""
    if cfg.get("resume") or not folder.config.exists():
        write_atomically(folder.config, lambda temporary: OmegaConf.save(cfg, temporary, resolve=True))


def _resume_checkpoint(cfg: DictConfig, folder: RunFolder) -> str | None:
    """The checkpoint to continue from, checked readable (and its config trusted) before anything
    is written. A resume whose last.ckpt is gone after the run ended is refused rather than
    restarted over the run's records; a run killed before its first last.ckpt continues from its
    newest whole checkpoint, or from the start."""
    path = None
    if cfg.get("ckpt_path"):
        path = Path(cfg.ckpt_path).expanduser().resolve()
        if not path.exists():
            raise CheckpointError(f"ckpt_path {path} does not exist; pass a .ckpt file from a run's checkpoints/ folder.")
    elif cfg.get("resume"):
        path = folder.last_checkpoint if folder.last_checkpoint.exists() else None
        summary = folder.read_summary()
        whole = folder.whole_checkpoints() if path is None else []
        ended = summary is not None and summary.status != "interrupted"
        if path is None and ended and (whole or summary.global_step):
            # a run that ended (completed, failed, diverged) and then lost last.ckpt: continuing from
            # an older file would train over its records, so the user picks the checkpoint
            raise CheckpointError(f"{folder.path} has trained steps but no {folder.checkpoints.name}/{folder.last_checkpoint.name} "
                                  "to continue from; pass ckpt_path=<one of its checkpoints> with resume=, or start a new run.")
        if path is None:
            # killed before its first last.ckpt was whole (SIGKILL, power loss): the newest whole
            # checkpoint, written in the same epoch-end hook just before last.ckpt, else the start
            path = whole[0] if whole else None
            log.warning("%s has no %s/%s (the run was stopped before its first one was written): %s", folder.path,
                        folder.checkpoints.name, folder.last_checkpoint.name,
                        f"continuing from {path.name}" if path else "training starts again from its first step")
    if path is not None:
        load_checkpoint(path, cfg.get("allow_targets"))
    return str(path) if path else None


def _best(trainer) -> dict:
    ckpt = trainer.checkpoint_callback
    if ckpt is None or ckpt.best_model_score is None:
        return {}
    score = float(ckpt.best_model_score)
    return {"monitor": ckpt.monitor, "mode": ckpt.mode, "score": score if math.isfinite(score) else None,
            "checkpoint": ckpt.best_model_path}


def _finish_wandb() -> None:
    """Each job is its own W&B run: close it, bounded, even after a failure."""
    import sys

    if "wandb" in sys.modules and sys.modules["wandb"].run is not None:
        try:
            sys.modules["wandb"].finish()
        except Exception as error:  # a W&B problem never fails the run
            log.warning("wandb.finish failed: %s", error)
