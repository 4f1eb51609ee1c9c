"""``dgm-train``: compose a run from ``conf/train.yaml`` and train it.

Examples::

    dgm-train                                  # VAE on the embedded 5k MNIST digits
    dgm-train model=iwae model.k=5 data=mnist  # IWAE on full MNIST (needs DGM_DATA_DIR)
    dgm-train resume=outputs/vae/<run>         # continue a run in its own folder
"""

from __future__ import annotations

import datetime
import logging
import math
import os
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from dgm_lab.cli import hydra_main, reports_user_errors
from dgm_lab.errors import ConfigError
from dgm_lab.metrics import specs
from dgm_lab.safe_config import load_run_config
from dgm_lab.settings import check_paths

log = logging.getLogger("dgm_lab")


def resumed_config(cfg: DictConfig) -> DictConfig:
    """The saved resolved config of ``cfg.resume`` with this command's ``key=value`` overrides on top."""
    saved = load_run_config(cfg.resume, cfg.get("allow_targets"))
    overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith("resume=")]
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if "." not in key and key not in ("seed", "test", "ckpt_path", "allow_targets"):
            raise ConfigError(f"cannot change config group {key!r} when resuming; only key=value settings such as trainer.max_epochs=20.")
    merged = OmegaConf.merge(saved, OmegaConf.from_dotlist([o.lstrip("+") for o in overrides]))
    with open_dict(merged):
        merged.resume = cfg.resume
        merged.allow_targets = cfg.get("allow_targets")  # the command line's, never the saved file's
        if "evaluation" in merged.model:  # the model's copy of the eval block was resolved when saved
            merged.model.evaluation = OmegaConf.to_container(merged.eval)
        # config.yaml is rewritten with these settings; the history says which came from which resume
        stamp = datetime.datetime.now().isoformat(timespec="seconds")
        merged.resumed = [*(merged.get("resumed") or []), {"at": stamp, "overrides": list(overrides)}]
    return merged


def prepare_sweep_job(cfg: DictConfig) -> None:
    """Make a multirun job behave like a single run for DDP re-launch and W&B grouping.

    Lightning starts DDP ranks > 0 by re-running ``sys.argv`` with ``hydra.run.dir`` set to
    ``HydraConfig.run.dir``. In a multirun that would re-run the whole sweep into the sweep's
    pattern folder; so the job's own overrides become the command line, in RUN mode, and the
    run folder becomes the job's folder.
    """
    hydra_cfg = HydraConfig.get()
    run_node = HydraConfig.instance().cfg.hydra.run
    with read_write(run_node):
        run_node.dir = hydra_cfg.runtime.output_dir
    sys.argv = [sys.argv[0], *hydra_cfg.overrides.task, "hydra.mode=RUN"]
    with open_dict(cfg):
        sweep = Path(hydra_cfg.sweep.dir)
        wandb_cfg = cfg.get("logger", {}).get("wandb") if cfg.get("logger") else None
        if wandb_cfg is not None and wandb_cfg.get("group") is None:
            wandb_cfg.group = f"{sweep.parent.name}/{sweep.name}"  # one W&B group per sweep
        cfg.tags = [*cfg.tags, f"sweep:{sweep.name}"]


def add_choice_tags(cfg: DictConfig) -> None:
    """Tag runs by model and data so W&B's comparison views can filter on them."""
    if not HydraConfig.initialized():
        return
    choices = HydraConfig.get().runtime.choices
    with open_dict(cfg):
        extra = [f"{group}:{choices[group]}" for group in ("model", "data") if choices.get(group)]
        cfg.tags = [*cfg.tags, *(t for t in extra if t not in cfg.tags)]


def slurm_requeue(cfg: DictConfig) -> DictConfig | None:
    """A requeued SLURM job runs its first command again: the saved config of that start's run folder
    (so the command's group overrides are not refused as changes), to resume it; None otherwise
    (a first start under SLURM notes its folder for that)."""
    from dgm_lab.preemption import remember_slurm_run, requeued_run

    run_dir = HydraConfig.get().runtime.output_dir
    previous = requeued_run(run_dir, cfg.paths.log_dir)
    if previous is None:
        remember_slurm_run(run_dir, cfg.paths.log_dir)
        return None
    log.info("requeued SLURM job: resuming %s", previous)
    saved = load_run_config(previous, cfg.get("allow_targets"))
    with open_dict(saved):
        saved.resume = previous
    return saved


class TrialFailed(RuntimeError):
    """A sweep job failed; raised (not exited) so the sweeper records it and goes on."""


def end_distributed_job(environment: dict) -> None:
    """The next sweep job in this process must start clean: Lightning's DDP launcher leaves
    its rank variables (LOCAL_RANK, WORLD_SIZE, MASTER_PORT...) and a process group behind."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    for key in set(os.environ) - set(environment):
        del os.environ[key]
    os.environ.update(environment)


@reports_user_errors("dgm-train")
def train_task(cfg: DictConfig) -> float | None:
    """The Hydra task of ``dgm-train``: one run (or one sweep job); returns the optimized metric."""
    # Imported here: ``dgm-train --help`` and config errors answer without loading torch and Lightning.
    from pytorch_lightning.utilities import rank_zero_only

    from dgm_lab.run import train

    check_paths(cfg, "resume", "ckpt_path")
    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    requeued = slurm_requeue(cfg) if not cfg.get("resume") and not multirun and HydraConfig.initialized() else None
    if requeued is not None:
        cfg = requeued
    elif cfg.get("resume"):
        cfg = resumed_config(cfg)
    else:
        add_choice_tags(cfg)
    if multirun:
        prepare_sweep_job(cfg)
    environment = dict(os.environ)
    try:
        summary = train(cfg)
    except Exception as error:
        if multirun:  # recorded by the sweeper as a failed trial (Optuna: TrialState.FAIL); the sweep goes on
            log.error("trial failed: %s: %s", type(error).__name__, error)
            raise TrialFailed(f"{type(error).__name__}: {error}") from error
        raise
    finally:
        if multirun:
            end_distributed_job(environment)
    metrics = summary.metrics
    if rank_zero_only.rank != 0:  # DDP: only rank 0 reports
        return None
    keys = specs.headline(metrics, monitor=cfg.monitor.get("metric"))
    shown = ", ".join(f"{k}={specs.format_value(k, metrics[k])}" for k in keys) or "no metric reported"
    closing = f"[dgm-lab] {summary.status} in {summary.wall_time_s:.0f}s: {shown}\n[dgm-lab] run folder: {summary.run_dir}"
    print(f"\n{closing}")
    _to_log_files(closing)
    target = cfg.get("optimized_metric")
    if target:
        value = metrics.get(target)
        if value is None or not math.isfinite(value):
            raise TrialFailed(f"optimized_metric {target} is {'missing' if value is None else value}; "
                              f"the run logged: {', '.join(sorted(metrics))}.")
        return value
    return None


def _to_log_files(text: str) -> None:
    """The closing lines into the run's train.log too (Hydra's file handler), not twice on the console."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.stream.write(text + "\n")
            handler.flush()


def main() -> None:
    hydra_main("train", train_task)


if __name__ == "__main__":
    main()
