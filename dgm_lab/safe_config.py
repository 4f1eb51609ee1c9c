"""Configs that come from disk (a run folder's ``config.yaml``, the config inside a checkpoint)
may build only what dgm-lab's own configs build.

``hydra.utils.instantiate`` calls whatever ``_target_`` names, so a run folder or a checkpoint
from someone else could otherwise run code on load: ``torch.load`` with ``weights_only: false``
(a pickle that runs ``os.system``), ``pathlib.Path.write_text``, ``builtins.open``,
``importlib.import_module``... A module-prefix allowlist does not stop that (``torch`` and
``numpy`` hold loaders that unpickle), so the allowlist is exact: every ``_target_`` of the
``conf/`` tree and of the model schemas, read from those files once, plus the class paths that
configs of earlier versions used (``models.moved``), plus what the user names on the command
line (``allow_targets=[mypkg.MyModel]``; never read from the file itself). Hydra's special keys
(``_args_``, ``_partial_``, ``_convert_``, ``_recursive_``) may only take the values ``conf/``
gives them for that target, and settings that turn a loader unsafe (``weights_only: false``,
``allow_pickle: true``) are refused anywhere. Everything is checked before anything is built
or imported; a refusal is one sentence naming the target, the file and the setting that allows it.

Every reader of a saved config goes through ``trusted_config``: ``load_run_config`` (resume)
and ``dgm_lab.checkpoints.load_checkpoint`` (dgm-eval, dgm-sample, ``ckpt_path=``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf, open_dict

from dgm_lab import run_folder
from dgm_lab.config import CONF_DIR, upgrade_saved_config
from dgm_lab.errors import CheckpointError, ConfigError
from dgm_lab.models.moved import MOVED_TARGETS
from dgm_lab.models.schemas import model_schemas, schema_node

# Hydra's keys that change what instantiating a target does.
SPECIAL_KEYS = ("_args_", "_partial_", "_convert_", "_recursive_")
# Settings that make a loader run code from a file (unpickling, a repository's own code), with
# the only value a saved config may give them.
SAFE_LOADER_VALUES = {"weights_only": True, "allow_pickle": False, "trust_remote_code": False, "pickle_module": None}
ALLOW_SETTING = "allow_targets"


@functools.cache
def conf_targets() -> dict[str, frozenset[tuple[str, object]]]:
    """{``_target_``: the (special key, value) pairs used with it} over every YAML file under
    ``conf/`` and every model schema node, plus the moved class paths of earlier versions."""
    found: dict[str, set[tuple[str, object]]] = {}

    def walk(node) -> None:
        if isinstance(node, dict):
            target = node.get("_target_")
            if isinstance(target, str):
                found.setdefault(target, set()).update((key, _hashable(node[key])) for key in SPECIAL_KEYS if key in node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for path in sorted(Path(CONF_DIR).rglob("*.yaml")):
        walk(yaml.safe_load(path.read_text()))
    for schema in model_schemas().values():
        walk(schema_node(schema))
    for target in MOVED_TARGETS.values():
        found.setdefault(target, set())
    return {target: frozenset(pairs) for target, pairs in found.items()}


def allowed_by_user(allow_targets) -> frozenset[str]:
    """The ``allow_targets=`` of the command line as a set of class paths (one name or a list)."""
    if allow_targets is None:
        return frozenset()
    names = [allow_targets] if isinstance(allow_targets, str) else list(allow_targets)
    for name in names:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{ALLOW_SETTING} takes class paths, e.g. {ALLOW_SETTING}=[mypkg.MyModel]; got {name!r}.")
    return frozenset(names)


def trusted_config(raw, source: str, allow_targets: Iterable[str] | None = None) -> DictConfig:
    """The config ``raw`` (a mapping read from ``source``), upgraded to today's class paths and
    resolved, after checking that it builds only allowed targets; raises ConfigError otherwise."""
    try:
        cfg = raw if isinstance(raw, DictConfig) else OmegaConf.create(raw)
        upgrade_saved_config(cfg)
        OmegaConf.resolve(cfg)  # what is checked is what will be built: no interpolation left to expand later
        tree = OmegaConf.to_container(cfg, resolve=False, throw_on_missing=False)
    except ConfigError:
        raise
    except Exception as error:  # OmegaConf raises many types for a config it cannot read or resolve
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(f"the config in {source} cannot be read ({first}); it was not written by dgm-train.") from None
    check_tree(tree, source, allowed_by_user(allow_targets))
    return cfg


def check_tree(tree, source: str, user_allowed: frozenset[str]) -> None:
    """Raise ConfigError on the first node of ``tree`` (plain containers) that builds something
    ``conf/`` does not, in depth-first order (an outer target before the nodes it would receive)."""
    allowed = conf_targets()

    def refuse(what: str, where: str, target: str | None) -> None:
        fix = (f"if you trust this file, add {ALLOW_SETTING}=[{target}] to the command" if target
               else "remove it from the file")
        raise ConfigError(f"{source} {what} (at {where or 'the top level'}), which no dgm-lab config does, "
                          f"so nothing was built: {fix}.")

    def walk(node, where: str, owner: str | None) -> None:
        if isinstance(node, dict):
            if "_target_" in node:
                target = node["_target_"]
                if not isinstance(target, str):
                    refuse(f"has a _target_ that is not a class path ({target!r})", where, None)
                trusted = target in user_allowed
                if not trusted and target not in allowed:
                    refuse(f"asks to build {target}", where, target)
                for key in SPECIAL_KEYS:
                    if not trusted and key in node and (key, _hashable(node[key])) not in allowed.get(target, ()):
                        refuse(f"sets {key}: {node[key]!r} on {target}", where, target)
                owner = target if trusted else None
            for key, value in node.items():
                if key in SAFE_LOADER_VALUES and value != SAFE_LOADER_VALUES[key] and owner is None:
                    refuse(f"sets {key}: {value!r}, which lets a loader run code from a file", _join(where, key), None)
                walk(value, _join(where, key), owner)
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{where}[{index}]", owner)

    walk(tree, "", None)


def load_run_config(folder: str, allow_targets: Iterable[str] | None = None) -> DictConfig:
    """The resolved config a run saved, for resume: checked (``trusted_config``), and every path
    inside the run folder it was written in moved to where ``folder`` is now, so a copied or
    moved run folder continues in its own place and never writes into the original."""
    run = run_folder.RunFolder(folder)
    if not run.config.exists():
        raise CheckpointError(f"{folder} is not a dgm-lab run folder (no {run_folder.CONFIG}); pass the folder a run printed.")
    try:
        raw = OmegaConf.load(run.config)
    except Exception as error:  # a YAML or OmegaConf error: the file is not a saved config
        raise ConfigError(f"{run.config} cannot be read ({str(error).splitlines()[0]}); it is not a dgm-lab config.") from None
    cfg = trusted_config(raw, str(run.config), allow_targets)
    saved_dir = OmegaConf.select(cfg, "paths.output_dir", default=None)
    with open_dict(cfg):
        if isinstance(saved_dir, str) and saved_dir:
            run_folder.rebase_paths(cfg, saved_dir, str(run.path))
        if "paths" in cfg:
            cfg.paths.output_dir = str(run.path)
    return cfg


def _join(where: str, key) -> str:
    return f"{where}.{key}" if where else str(key)


def _hashable(value):
    """A special key's value as a set member (``_args_`` is a list)."""
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value

