"""``dgm-train``: compose a run from ``conf/train.yaml`` and train it.

Examples::

    dgm-train                                  # VAE on the embedded 5k MNIST digits
    dgm-train model=iwae model.k=5 data=mnist  # IWAE on full MNIST (needs DGM_DATA_DIR)
    dgm-train resume=outputs/vae/<run>         # continue a run in its own folder
"""

from __future__ import annotations

import logging
import math

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.utilities import rank_zero_only

from dgm_lab.cli import reports_user_errors
from dgm_lab.config import CONF_DIR, load_run_config, register_resolvers
from dgm_lab.errors import ConfigError, DivergedError
from dgm_lab.run import train

log = logging.getLogger("dgm_lab")
HEADLINE = ("test/nll_iwae", "test/elbo", "test/bpd", "val/elbo", "val/active_units")


def resumed_config(cfg: DictConfig) -> DictConfig:
    """The saved resolved config of ``cfg.resume`` with this command's ``key=value`` overrides on top."""
    saved = load_run_config(cfg.resume)
    overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith("resume=")]
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if "." not in key and key not in ("seed", "test", "ckpt_path"):
            raise ConfigError(f"cannot change config group {key!r} when resuming; only key=value settings such as trainer.max_epochs=20.")
    merged = OmegaConf.merge(saved, OmegaConf.from_dotlist([o.lstrip("+") for o in overrides]))
    with open_dict(merged):
        merged.resume = cfg.resume
    return merged


@reports_user_errors("dgm-train")
def run(cfg: DictConfig) -> float | None:
    if cfg.get("resume"):
        cfg = resumed_config(cfg)
    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        summary = train(cfg)
    except DivergedError:
        if multirun:  # a diverged sweep trial is a failed trial, not the end of the study
            log.error("trial diverged; reported as NaN to the sweeper")
            return math.nan
        raise
    metrics = summary["metrics"]
    if rank_zero_only.rank != 0:  # DDP: only rank 0 reports
        return None
    shown = ", ".join(f"{k}={metrics[k]:.3f}" for k in HEADLINE if k in metrics)
    print(f"\n[dgm-lab] {summary['status']} in {summary['wall_time_s']:.0f}s: {shown}\n[dgm-lab] run folder: {summary['run_dir']}")
    target = cfg.get("optimized_metric")
    if target:
        value = metrics.get(target)
        if value is None or not math.isfinite(value):
            log.error("optimized metric %s is missing or not finite: %s", target, value)
            return math.nan
        return value
    return None


def main() -> None:
    register_resolvers()
    hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")(run)()


if __name__ == "__main__":
    main()
