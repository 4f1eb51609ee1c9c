"""Config plumbing: OmegaConf resolvers, pre-flight validation, run folders and resume."""

from __future__ import annotations

import datetime
import functools
import os
import secrets
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dgm_lab.errors import CheckpointError, ConfigError
from dgm_lab.models.schemas import register_model_schemas

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
RESOLVED_CONFIG = "config.yaml"  # the resolved config, saved in every run folder


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
    register_model_schemas()  # the schemas of conf/model, in Hydra's ConfigStore


# (config key, test, message): checked before anything is built, so a bad value fails in a second.
RULES = [
    ("optimizer.lr", lambda v: v > 0, "optimizer.lr must be positive"),
    ("optimizer.weight_decay", lambda v: v >= 0, "optimizer.weight_decay must be non-negative"),
    ("data.batch_size", lambda v: isinstance(v, int) and v >= 1, "data.batch_size must be a positive integer"),
    ("data.num_workers", lambda v: isinstance(v, int) and v >= 0, "data.num_workers must be a non-negative integer"),
    ("trainer.max_epochs", lambda v: v is None or v == -1 or v >= 1, "trainer.max_epochs must be >= 1 (or -1 for no limit)"),
    ("eval.iwae_k", lambda v: isinstance(v, int) and v >= 1, "eval.iwae_k must be a positive integer"),
]


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError naming the first out-of-range value."""
    for key, test, message in RULES:
        value = OmegaConf.select(cfg, key, default=None)
        if value is None and key != "trainer.max_epochs":
            continue
        try:
            ok = test(value)
        except TypeError:
            ok = False
        if not ok:
            raise ConfigError(f"{message}, got {key}={value!r}.")


def load_run_config(run_folder: str) -> DictConfig:
    """The resolved config a run saved, for resume, eval and sample."""
    path = Path(run_folder) / RESOLVED_CONFIG
    if not path.exists():
        raise CheckpointError(f"{run_folder} is not a dgm-lab run folder (no {RESOLVED_CONFIG}); pass the folder a run printed.")
    return OmegaConf.load(path)


def to_plain(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)
