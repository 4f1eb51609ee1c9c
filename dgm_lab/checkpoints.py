"""Find, load and rebuild from checkpoints. Every checkpoint carries its resolved run config,
so a model can be rebuilt from the file alone; loading is always ``weights_only=True``."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import NamedTuple

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from dgm_lab import builders
from dgm_lab.config import upgrade_saved_config
from dgm_lab.errors import CheckpointError
from dgm_lab.run_folder import CHECKPOINTS, RunFolder
from dgm_lab.safe_config import trusted_config


def resolve_checkpoint(path: str) -> tuple[Path, Path]:
    """``path`` is a checkpoint file or a run folder (then: its best checkpoint, else last.ckpt).
    Returns (checkpoint file, run folder)."""
    target = Path(path).expanduser().resolve()
    if target.is_dir():
        folder = RunFolder(target)
        for candidate in (folder.best_checkpoint(), folder.last_checkpoint):
            if candidate is not None and candidate.exists():
                return candidate, folder.path
        raise CheckpointError(f"{target} has no {CHECKPOINTS}/{folder.last_checkpoint.name}; pass a checkpoint file "
                              "or a run folder that finished an epoch.")
    if not target.exists():
        raise CheckpointError(f"checkpoint {target} does not exist; pass a .ckpt file or a run folder.")
    run_path = target.parent.parent if target.parent.name == CHECKPOINTS else target.parent
    return target, run_path


def load_checkpoint(path: Path, allow_targets=None) -> dict:
    """``torch.load(weights_only=True)`` with one clear sentence for a corrupt or foreign file; the
    config inside is checked (``safe_config.trusted_config``: it builds only what dgm-lab's
    configs build, plus ``allow_targets`` from the command line) and kept upgraded."""
    try:
        with warnings.catch_warnings():
            # torch warns about a pickle protocol it did not write before refusing the file: the
            # sentence below already says the file cannot be read, a second line only confuses.
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # not a torch file, or one holding objects that are never unpickled
        raise CheckpointError(f"checkpoint {path} could not be read with weights_only=True; it is corrupt, truncated "
                              "or not a dgm-lab checkpoint: use another file from the run's checkpoints/ folder.") from None
    except Exception as error:  # torch raises many types for a bad file; all mean the same to the user
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"checkpoint {path} could not be read ({first}); it is corrupt or truncated: "
                              "use another file from the run's checkpoints/ folder.") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "dgm_config" not in checkpoint:
        raise CheckpointError(f"{path} is not a dgm-lab checkpoint (no state_dict/dgm_config); pass one written by dgm-train.")
    trusted = trusted_config(checkpoint["dgm_config"], f"checkpoint {path}", allow_targets)
    checkpoint["dgm_config"] = OmegaConf.to_container(trusted)
    return checkpoint


def check_weights_fit(checkpoint: dict, model, path: Path) -> None:
    """``ckpt_path=`` of another model, or of the same model with another ``latent_dim``/width: one
    sentence naming the first difference, before Lightning's strict load would fail with a traceback."""
    own, theirs = model.state_dict(), checkpoint["state_dict"]
    missing = [key for key in own if key not in theirs]
    unexpected = [key for key in theirs if key not in own]
    resized = [f"{key} {tuple(theirs[key].shape)} vs {tuple(own[key].shape)}" for key in own
               if key in theirs and theirs[key].shape != own[key].shape]
    if missing or unexpected or resized:
        saved = ((checkpoint.get("dgm_config") or {}).get("model") or {}).get("_target_", "another model")
        first = (f"shapes differ: {resized[0]}" if resized else
                 f"missing {missing[:2]}" if missing else f"unexpected {unexpected[:2]}")
        raise CheckpointError(f"ckpt_path {path} holds weights of {saved} that do not fit this run's model ({first}); "
                              "pass a checkpoint of the same model and settings, or drop ckpt_path=.")


def relocate_data_paths(cfg: DictConfig, data_dir: str) -> None:
    """Point the data of a saved config at this machine's data folder: ``data.data_dir`` and every
    ``data.*`` path under the training machine's ``paths.data_dir`` (an image folder's ``root``...)."""
    old = str(OmegaConf.select(cfg, "paths.data_dir", default="") or "").rstrip("/")
    if "data_dir" in cfg.data:
        cfg.data.data_dir = data_dir
    for key, value in list(cfg.data.items()):
        if old and isinstance(value, str) and (value == old or value.startswith(old + "/")):
            cfg.data[key] = data_dir.rstrip("/") + value[len(old):]


class Rebuilt(NamedTuple):
    """What a checkpoint rebuilds into: its (upgraded) config, the datamodule and the model."""

    config: DictConfig
    datamodule: object
    model: object


def saved_config(checkpoint: dict, data_dir: str | None = None, evaluation: dict | None = None) -> DictConfig:
    """The run config inside a checkpoint, upgraded to this version; ``data_dir`` replaces the data
    folder recorded at training time (it may be another machine's), ``evaluation`` the model's
    evaluation settings (e.g. iwae_k)."""
    cfg: DictConfig = upgrade_saved_config(OmegaConf.create(checkpoint["dgm_config"]))
    with open_dict(cfg):
        if data_dir:
            relocate_data_paths(cfg, data_dir)
        if evaluation is not None and "evaluation" in cfg.model:
            cfg.model.evaluation = evaluation
    return cfg


def rebuild_model(checkpoint: dict, cfg: DictConfig | None = None):
    """The model of a checkpoint with its weights (no data needed: shapes are in the saved config)."""
    model = builders.build_model(cfg if cfg is not None else saved_config(checkpoint))
    missing, unexpected = model.load_state_dict(checkpoint["state_dict"], strict=False)
    if missing or unexpected:
        raise CheckpointError(f"checkpoint weights do not match the model in its config (missing {missing[:3]}, unexpected {unexpected[:3]}).")
    return model


def rebuild(checkpoint: dict, data_dir: str | None = None, evaluation: dict | None = None) -> Rebuilt:
    """Config, datamodule and model (with the checkpoint's weights) from the config inside a checkpoint."""
    cfg = saved_config(checkpoint, data_dir, evaluation)
    return Rebuilt(cfg, builders.build_datamodule(cfg), rebuild_model(checkpoint, cfg))
