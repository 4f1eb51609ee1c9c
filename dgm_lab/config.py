"""Config plumbing: where the configs are, OmegaConf resolvers, pre-flight validation, run folders."""

from __future__ import annotations

import datetime
import functools
import os
import secrets
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dgm_lab import run_folder
from dgm_lab.errors import CheckpointError
from dgm_lab.settings import EvaluationSettings, OptimizerSettings, check_trainer_limits


def _config_dir() -> Path:
    """``dgm_lab/conf`` in a wheel install (the build copies the repository's ``conf/`` there),
    else ``conf/`` beside the package: a source checkout or an editable install."""
    installed = Path(__file__).resolve().parent / "conf"
    return installed if installed.is_dir() else installed.parent.parent / "conf"


CONF_DIR = str(_config_dir())


def new_run_id() -> str:
    """Microsecond timestamp plus a short random id: two jobs started together never collide."""
    return datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f") + "-" + secrets.token_hex(3)


@functools.cache
def run_dir(resume: str | None, log_dir: str, name: str) -> str:
    """The run folder: the resumed one, or a fresh ``<log_dir>/<name>/<run id>``.

    Cached: Hydra resolves ``hydra.sweep.dir`` more than once per process, and every
    resolution must name the same folder.
    """
    if resume:
        return str(Path(resume).expanduser().resolve())
    return str(Path(log_dir).expanduser().resolve() / name / new_run_id())


def hydra_subdir(resume: str | None) -> str:
    """Where Hydra saves its composed config; a resumed run keeps the original ``.hydra``."""
    if resume:
        return ".hydra/resumed-" + new_run_id()
    return ".hydra"


def wandb_mode() -> str:
    """``$WANDB_MODE`` if set, else online when an API key is configured, else offline."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        if "api.wandb.ai" in netrc.read_text():
            return "online"
    except OSError:
        pass
    return "offline"


def register_resolvers() -> None:
    resolvers = {
        "dgm_run_dir": run_dir,
        "dgm_hydra_subdir": hydra_subdir,
        "dgm_wandb_mode": wandb_mode,
        "dgm_wandb_id": lambda: secrets.token_hex(4),
        "dgm_abspath": lambda p: str(Path(p).expanduser().resolve()),
    }
    for name, fn in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError naming the first out-of-range run-level value, before anything is built.

    Only settings that no constructor owns are checked here (``dgm_lab.settings``); a model's
    settings are checked by its typed config, a dataset's by its datamodule."""
    EvaluationSettings.from_config(cfg.get("eval"))
    if cfg.get("optimizer") is not None:
        OptimizerSettings.from_config(cfg.optimizer)
    check_trainer_limits(cfg.get("trainer"))


def load_run_config(folder: str) -> DictConfig:
    """The resolved config a run saved, for resume, eval and sample."""
    path = run_folder.RunFolder(folder).config
    if not path.exists():
        raise CheckpointError(f"{folder} is not a dgm-lab run folder (no {run_folder.CONFIG}); pass the folder a run printed.")
    return OmegaConf.load(path)
