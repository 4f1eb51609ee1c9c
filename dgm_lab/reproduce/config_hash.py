"""The hash of a row's resolved config: what a stored result was computed with, so that a result
whose experiment config (or a default it inherits) has changed since is shown as stale."""

from __future__ import annotations

import functools
import hashlib

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from omegaconf import OmegaConf, open_dict

from dgm_lab.config import CONF_DIR, register_resolvers
from dgm_lab.errors import ConfigError
from dgm_lab.reproduce.registry import Row, upstream_rows

# Where this machine keeps things, not what the run computes: fixed before resolving. The logger
# and the seed are left out too: the seeds are the row's, and a logger does not change a number.
PLACEHOLDER_PATHS = {"data_dir": "<data_dir>", "log_dir": "<log_dir>", "output_dir": "<output_dir>"}


def _composed(overrides: list[str]):
    register_resolvers()
    # Hydra's global state is set up for this composition and torn down after it, so a caller that
    # composes its own configs afterwards (a test, a notebook) finds Hydra as it left it.
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            return compose("train", overrides=overrides, return_hydra_config=True)
    except HydraException as error:
        raise ConfigError(f"the row's config does not compose: {str(error).splitlines()[0]}") from None


def resolved_config(overrides: list[str]) -> dict:
    """``conf/train.yaml`` composed with ``overrides`` as dgm-train composes it, resolved, with the
    machine's paths replaced by placeholders and Hydra's own node dropped."""
    cfg = _composed(list(overrides))
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        for key, value in PLACEHOLDER_PATHS.items():
            cfg.paths[key] = value
        del cfg["hydra"]
        cfg.pop("logger", None)  # where metrics are written (and a fresh W&B id per composition)
    return OmegaConf.to_container(cfg, resolve=True)


@functools.cache
def _hash(overrides: tuple[str, ...]) -> str:
    text = OmegaConf.to_yaml(OmegaConf.create(resolved_config(list(overrides))), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def config_hash(overrides: list[str]) -> str:
    """sha256 (first 16 hex digits) of the resolved config as sorted YAML (cached per process)."""
    return _hash(tuple(overrides))


def row_hash(row: Row, rows: dict[str, Row], extra: tuple[str, ...] = ()) -> str:
    """A row's config hash; for a row run ``after`` others, combined with theirs, so that a changed
    M1 config shows the M1+M2 result as stale too. ``extra``: overrides on top of the row's own
    (the hash of the row as a run that changed a setting trained)."""
    digests = [config_hash([*row.train_overrides(), *extra])]
    digests += [config_hash(r.train_overrides()) for r in upstream_rows(rows, row)]
    return digests[0] if len(digests) == 1 else hashlib.sha256(" ".join(digests).encode()).hexdigest()[:16]
