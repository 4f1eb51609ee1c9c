"""``dgm-sample``: draw samples from a trained model into an ``.npz`` (or a folder of class
sub-folders) and a PNG grid.

    dgm-sample ckpt_path=outputs/vae/<run> num_samples=1000
    dgm-sample ckpt_path=outputs/rbm_dbm_mnist/<run> gibbs_steps=5000   # Boltzmann machines: chain length
    dgm-sample ckpt_path=outputs/dcgan/<run> generator=raw               # GANs: the trained, not the EMA, generator
    dgm-sample ckpt_path=outputs/cvae/<run> labels=[3,3,7]              # class-conditional: these classes
    dgm-sample ckpt_path=outputs/cvae/<run> per_class=1000 export=image_folder output=synthetic/

Files: ``<run>/samples/sample-n<N>-seed<S>[-label<L>|-per_class<M>][-raw].npz`` and ``.png``; a
name already taken gets ``-2``, ``-3``... (an existing file is never overwritten; an explicit
``output=`` that exists is refused). The npz holds ``images``: uint8 (N, H, W, C) in 0..255, and
``labels`` (N,) when the model is class-conditional (by default class i mod K for sample i); its
grid has one row per class. ``export=image_folder`` writes ``<output>/<class>/NNNNN.png`` instead
(``dgm_lab.synthetic``), with the grid beside the folder.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from omegaconf import DictConfig, ListConfig

from dgm_lab.cli import hydra_main, reports_user_errors
from dgm_lab.errors import ConfigError
from dgm_lab.run_folder import RunFolder
from dgm_lab.settings import SamplingSettings, check_paths


def requested_labels(cfg: DictConfig, model):
    """The class of every sample (a long tensor) from ``label=``, ``labels=[...]`` or ``per_class=N``
    (at most one of them); class i mod K by default for a conditional model; None for an
    unconditional one."""
    import torch

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
    # Imported here: ``dgm-sample --help`` and usage errors answer without loading torch.
    import torch

    from dgm_lab.checkpoints import load_checkpoint, rebuild_model, resolve_checkpoint
    from dgm_lab.grids import save_grid
    from dgm_lab.models.contract import GibbsSampler
    from dgm_lab.synthetic import EXPORTS, class_grid, write_image_folder, write_npz

    check_paths(cfg, "ckpt_path", "output")
    if not cfg.get("ckpt_path"):
        raise ConfigError("pass ckpt_path=<checkpoint file or run folder>, e.g. dgm-sample ckpt_path=outputs/vae/<run>.")
    SamplingSettings.from_config(cfg)  # counts and seed checked before anything is loaded
    export = cfg.get("export") or "npz"
    if export not in EXPORTS:
        raise ConfigError(f"export={export!r} is not one of {', '.join(EXPORTS)}.")
    ckpt_file, run_folder = resolve_checkpoint(cfg.ckpt_path)
    model = rebuild_model(load_checkpoint(ckpt_file, cfg.get("allow_targets")))
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
        model.sample_gibbs_steps = int(cfg.gibbs_steps)
    options = {}
    if cfg.get("generator") is not None:
        if cfg.generator not in ("ema", "raw"):
            raise ConfigError(f"generator must be ema or raw, got {cfg.generator!r}.")
        if not hasattr(model, "sampling_generator"):
            raise ConfigError("generator= applies to GANs (their EMA or raw generator); this model has one sampler.")
        options["use_ema"] = cfg.generator == "ema"
    out = output_path(cfg, RunFolder(run_folder).samples, num_samples, ".npz" if export == "npz" else "")
    chunks, drawn = [], 0
    while drawn < num_samples:  # bounded memory for large N
        n = min(cfg.batch_size, num_samples - drawn)
        chunk_labels = labels[drawn : drawn + n] if labels is not None else None
        chunks.append(model.sample(n, generator=generator, labels=chunk_labels, **options).float().clamp(0, 1).cpu())
        drawn += n
    images = torch.cat(chunks)
    as_uint8 = (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    if export == "image_folder":
        out = write_image_folder(out, as_uint8, labels.numpy(), class_names(run_folder, model.num_classes))
    else:
        out = write_npz(out, as_uint8, None if labels is None else labels.numpy())
    grid_path = grid_beside(out)
    what = f"class {int(cfg.label)}, " if cfg.get("label") is not None else ""
    if labels is None or cfg.get("label") is not None:
        shown = images[: cfg.grid_size]
        columns = max(1, int(math.sqrt(len(shown))))
    else:  # one row per class
        shown, columns = class_grid(images, labels, max(1, cfg.grid_size // len(labels.unique())))
        what = "one row per class, "
    save_grid(shown, grid_path, nrow=columns, caption=f"{len(shown)} of {len(images)} samples ({what}seed {cfg.seed})")
    record = {"export": export, "path": str(out), "png": str(grid_path), "shape": list(as_uint8.shape)}
    if labels is not None:
        record["per_class"] = torch.bincount(labels, minlength=model.num_classes).tolist()
    return record


def output_path(cfg: DictConfig, samples: Path, num_samples: int, suffix: str) -> Path:
    """The .npz (``suffix=".npz"``) or export folder (``suffix=""``) to write: ``output=``, or a name
    that says what was drawn (count, seed, class, generator), made unique with ``-2``, ``-3``... so
    no earlier draw is overwritten."""
    if cfg.output:
        out = Path(cfg.output)
        if (out.exists() and (suffix or any(out.iterdir()))) or grid_beside(out).exists():
            raise ConfigError(f"output {out} (or its .png) already exists; choose another output= or remove it.")
        out.parent.mkdir(parents=True, exist_ok=True)
        return out
    stem = f"sample-n{num_samples}-seed{cfg.seed}"
    stem += f"-label{int(cfg.label)}" if cfg.get("label") is not None else ""
    stem += f"-per_class{int(cfg.per_class)}" if cfg.get("per_class") is not None else ""
    stem += "-raw" if cfg.get("generator") == "raw" else ""
    samples.mkdir(parents=True, exist_ok=True)
    out, copy = samples / f"{stem}{suffix}", 1
    while out.exists() or grid_beside(out).exists():
        copy += 1
        out = samples / f"{stem}-{copy}{suffix}"
    return out


def grid_beside(out: Path) -> Path:
    """The PNG grid of an ``.npz`` (same stem) or of an export folder (beside it, so that
    ``data=image_folder`` does not read the grid as a sample)."""
    return out.with_suffix(".png") if out.suffix == ".npz" else out.with_name(out.name + ".png")


@reports_user_errors("dgm-sample")
def sample_task(cfg: DictConfig) -> None:
    record = draw(cfg)
    print(f"[dgm-sample] {record['shape'][0]} samples -> {record['path']} (grid {record['png']})")
    print(json.dumps(record))


def main() -> None:
    hydra_main("sample", sample_task)


if __name__ == "__main__":
    main()
