"""Config plumbing: where the configs are, OmegaConf resolvers, pre-flight validation, run folders."""

from __future__ import annotations

import datetime
import functools
import os
import secrets
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from dgm_lab import performance
from dgm_lab.errors import ConfigError
from dgm_lab.models.moved import MOVED_TARGETS, REMOVED_MODEL_KEYS
from dgm_lab.models.schemas import check_model_config, register_model_schemas
from dgm_lab.settings import EvaluationSettings, OptimizerSettings, check_seed, check_trainer_limits


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


def hydra_subdir(resume: str | None, output_dir: str | None = None) -> str:
    """Where Hydra saves its composed config; a resumed run keeps the original ``.hydra``, and so
    does any other command into a folder that has one (a fresh run there is refused, and a DDP
    rank > 0 re-launched into it must not overwrite rank 0's files)."""
    if resume:
        return ".hydra/resumed-" + new_run_id()
    if output_dir and (Path(output_dir) / ".hydra" / "config.yaml").exists():
        return ".hydra/attempt-" + new_run_id()
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


def required(setting: str, what: str):
    """``${dgm_required:model.m1_ckpt,'the run folder of a trained M1 VAE'}``: a setting an
    experiment cannot run without. (A ``???`` in an experiment would not do: merged over the
    model's default it leaves the default in place, and the run would quietly be another model.)"""
    raise ConfigError(f"{setting} needs a value: give {setting}=<{what}>.")


def register_resolvers() -> None:
    resolvers = {
        "dgm_required": required,
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


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError naming the first out-of-range run-level value, before anything is built.

    Run-level settings (``dgm_lab.settings``) and the model's typed settings (its family's
    ``config.py``, the dataclass its constructor uses) are checked here; a dataset's settings by
    its datamodule, which is built next."""
    check_seed(cfg.get("seed"))
    EvaluationSettings.from_config(cfg.get("eval"))
    if cfg.get("optimizer") is not None:
        OptimizerSettings.from_config(cfg.optimizer)
    check_trainer_limits(cfg.get("trainer"))
    performance.check(dict(cfg.get("trainer") or {}))
    if cfg.get("model") is not None and "_target_" in cfg.model:
        check_model_config(cfg.model)


def upgrade_saved_config(cfg: DictConfig) -> DictConfig:
    """A config saved by an earlier version, rewritten in place for this one: every ``_target_``
    that moved (``dgm_lab.models.moved.MOVED_TARGETS``, nested nodes included) and the model
    settings that no longer exist (``REMOVED_MODEL_KEYS``) dropped. Returns ``cfg``."""
    def rewrite(node) -> None:
        if isinstance(node, DictConfig):
            target = node.get("_target_") if "_target_" in node else None
            if isinstance(target, str) and target in MOVED_TARGETS:
                node._target_ = MOVED_TARGETS[target]
            for value in node.values():
                rewrite(value)
        elif OmegaConf.is_list(node):
            for value in node:
                rewrite(value)

    with open_dict(cfg):
        rewrite(cfg)
        model = cfg.get("model")
        if isinstance(model, DictConfig):
            for key in REMOVED_MODEL_KEYS.get(model.get("_target_"), []):
                model.pop(key, None)
    return cfg
