"""``dgm-sample``: draw samples from a trained model into an ``.npz`` (or a class-folder dataset)
and a PNG grid.

    dgm-sample ckpt_path=outputs/vae/<run> num_samples=1000
    dgm-sample ckpt_path=outputs/rbm_dbm_mnist/<run> gibbs_steps=5000   # Boltzmann machines: chain length
    dgm-sample ckpt_path=outputs/cvae/<run> labels=[3,3,7]              # class-conditional: these classes
    dgm-sample ckpt_path=outputs/cvae/<run> per_class=1000 export=image_folder output=synthetic/

The npz holds ``images``: uint8 (N, H, W, C) in 0..255, and ``labels`` (N,) when the model is
class-conditional (by default class i mod K for sample i); its grid has one row per class.
``export=image_folder`` writes ``<output>/<class>/NNNNN.png`` instead (``dgm_lab.synthetic``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from omegaconf import DictConfig, ListConfig
from torchvision.utils import save_image

from dgm_lab.checkpoints import load_checkpoint, rebuild_model, resolve_checkpoint
from dgm_lab.cli import hydra_main, reports_user_errors
from dgm_lab.errors import ConfigError
from dgm_lab.models.contract import GibbsSampler
from dgm_lab.run_folder import RunFolder
from dgm_lab.synthetic import EXPORTS, class_grid, write_image_folder, write_npz


def requested_labels(cfg: DictConfig, model) -> torch.Tensor | None:
    """The class of every sample from ``label=``, ``labels=[...]`` or ``per_class=N`` (at most one of
    them); class i mod K by default for a conditional model; None for an unconditional one."""
    given = {key: cfg.get(key) for key in ("label", "labels", "per_class") if cfg.get(key) is not None}
    if len(given) > 1:
        raise ConfigError(f"give only one of label=, labels= and per_class= (got {', '.join(given)}).")
    if given and not model.conditional:
        raise ConfigError(f"{next(iter(given))}= needs a class-conditional model; this one is unconditional.")
    if not model.conditional:
        return None
    if "per_class" in given:
        if isinstance(cfg.per_class, bool) or not isinstance(cfg.per_class, int) or cfg.per_class < 1:
            raise ConfigError(f"per_class must be a positive integer, got {cfg.per_class!r}.")
        labels = torch.arange(model.num_classes).repeat_interleave(int(cfg.per_class))
    elif "labels" in given:
        values = cfg.labels
        if not isinstance(values, ListConfig | list) or not values or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise ConfigError(f"labels must be a non-empty list of class indices such as labels=[3,3,7], got {values!r}.")
        labels = torch.tensor(list(values), dtype=torch.long)
    elif "label" in given:
        labels = torch.full((cfg.num_samples,), int(cfg.label), dtype=torch.long)
    else:
        labels = torch.arange(cfg.num_samples) % model.num_classes
    if ((labels < 0) | (labels >= model.num_classes)).any():
        raise ConfigError(f"classes must be 0..{model.num_classes - 1}, got {sorted(set(labels.tolist()))}.")
    return labels


def class_names(run_folder: Path, num_classes: int) -> list[str]:
    """The training data's class names from the run's summary.json, else the label indices."""
    summary = RunFolder(run_folder).read_summary()
    names = ((summary.data or {}).get("class_names") if summary else None) or []
    return list(names) if len(names) == num_classes else [str(i) for i in range(num_classes)]


def draw(cfg: DictConfig) -> dict:
    if not cfg.get("ckpt_path"):
        raise ConfigError("pass ckpt_path=<checkpoint file or run folder>, e.g. dgm-sample ckpt_path=outputs/vae/<run>.")
    if cfg.num_samples < 1:
        raise ConfigError(f"num_samples must be a positive integer, got {cfg.num_samples}.")
    export = cfg.get("export") or "npz"
    if export not in EXPORTS:
        raise ConfigError(f"export={export!r} is not one of {', '.join(EXPORTS)}.")
    ckpt_file, run_folder = resolve_checkpoint(cfg.ckpt_path)
    model = rebuild_model(load_checkpoint(ckpt_file))
    model.eval()
    generator = torch.Generator().manual_seed(cfg.seed)
    labels = requested_labels(cfg, model)
    if export == "image_folder" and labels is None:
        raise ConfigError("export=image_folder writes one folder per class and needs a class-conditional model; "
                          "use export=npz for this one.")
    num_samples = len(labels) if labels is not None else cfg.num_samples
    if cfg.gibbs_steps is not None:
        if not isinstance(model, GibbsSampler):
            raise ConfigError("gibbs_steps= applies to Boltzmann machines (rbm, dbn, dbm); this model samples directly.")
        if cfg.gibbs_steps < 1:
            raise ConfigError(f"gibbs_steps must be a positive integer, got {cfg.gibbs_steps}.")
        model.sample_gibbs_steps = int(cfg.gibbs_steps)
    chunks, drawn = [], 0
    while drawn < num_samples:  # bounded memory for large N
        n = min(cfg.batch_size, num_samples - drawn)
        chunk_labels = labels[drawn : drawn + n] if labels is not None else None
        chunks.append(model.sample(n, generator=generator, labels=chunk_labels).float().clamp(0, 1).cpu())
        drawn += n
    images = torch.cat(chunks)
    as_uint8 = (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    default = RunFolder(run_folder).samples / f"sample-n{num_samples}-seed{cfg.seed}"
    if export == "image_folder":
        out = write_image_folder(Path(cfg.output) if cfg.output else default, as_uint8, labels.numpy(),
                                 class_names(run_folder, model.num_classes))
        grid_path = out.with_name(out.name + ".png")  # beside the folder: data=image_folder must not read it
    else:
        out = write_npz(Path(cfg.output) if cfg.output else default.with_suffix(".npz"), as_uint8,
                        None if labels is None else labels.numpy())
        grid_path = out.with_suffix(".png")
    if labels is None:
        shown = images[: cfg.grid_size]
        save_image(shown, grid_path, nrow=max(1, int(math.sqrt(len(shown)))))
    else:  # one row per class
        shown, columns = class_grid(images, labels, max(1, cfg.grid_size // len(labels.unique())))
        save_image(shown, grid_path, nrow=columns)
    record = {"export": export, "path": str(out), "png": str(grid_path), "shape": list(as_uint8.shape)}
    if labels is not None:
        record["per_class"] = torch.bincount(labels, minlength=model.num_classes).tolist()
    return record


@reports_user_errors("dgm-sample")
def sample_task(cfg: DictConfig) -> None:
    record = draw(cfg)
    print(f"[dgm-sample] {record['shape'][0]} samples -> {record['path']} (grid {record['png']})")
    print(json.dumps(record))


def main() -> None:
    hydra_main("sample", sample_task)


if __name__ == "__main__":
    main()
