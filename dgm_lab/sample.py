"""``dgm-sample``: draw samples from a trained model into an ``.npz`` and a PNG grid.

    dgm-sample ckpt_path=outputs/vae/<run> num_samples=1000
    dgm-sample ckpt_path=outputs/rbm_dbm_mnist/<run> gibbs_steps=5000   # Boltzmann machines: chain length
    dgm-sample ckpt_path=outputs/dcgan/<run> generator=raw               # GANs: the trained, not the EMA, generator

Files: ``<run>/samples/sample-n<N>-seed<S>[-label<L>][-raw].npz`` and ``.png``; a name already
taken gets ``-2``, ``-3``... (an existing file is never overwritten; an explicit ``output=`` that
exists is refused). The npz holds ``images``: uint8 (N, H, W, C) in 0..255, and ``labels`` (N,) when the model
is class-conditional.
"""

from __future__ import annotations

import math
from pathlib import Path

from omegaconf import DictConfig

from dgm_lab.cli import hydra_main, reports_user_errors
from dgm_lab.errors import ConfigError
from dgm_lab.run_folder import RunFolder


def draw(cfg: DictConfig) -> dict:
    # Imported here: ``dgm-sample --help`` and usage errors answer without loading torch.
    import numpy as np
    import torch

    from dgm_lab.checkpoints import load_checkpoint, rebuild_model, resolve_checkpoint
    from dgm_lab.grids import save_grid
    from dgm_lab.models.contract import GibbsSampler

    if not cfg.get("ckpt_path"):
        raise ConfigError("pass ckpt_path=<checkpoint file or run folder>, e.g. dgm-sample ckpt_path=outputs/vae/<run>.")
    if cfg.num_samples < 1:
        raise ConfigError(f"num_samples must be a positive integer, got {cfg.num_samples}.")
    ckpt_file, run_folder = resolve_checkpoint(cfg.ckpt_path)
    model = rebuild_model(load_checkpoint(ckpt_file, cfg.get("allow_targets")))
    model.eval()
    generator = torch.Generator().manual_seed(cfg.seed)
    labels = None
    if cfg.label is not None:
        if not model.conditional:
            raise ConfigError("label= needs a class-conditional model; this one is unconditional.")
        labels = torch.full((cfg.num_samples,), int(cfg.label), dtype=torch.long)
    if cfg.gibbs_steps is not None:
        if not isinstance(model, GibbsSampler):
            raise ConfigError("gibbs_steps= applies to Boltzmann machines (rbm, dbn, dbm); this model samples directly.")
        if cfg.gibbs_steps < 1:
            raise ConfigError(f"gibbs_steps must be a positive integer, got {cfg.gibbs_steps}.")
        model.sample_gibbs_steps = int(cfg.gibbs_steps)
    options = {}
    if cfg.get("generator") is not None:
        if cfg.generator not in ("ema", "raw"):
            raise ConfigError(f"generator must be ema or raw, got {cfg.generator!r}.")
        if not hasattr(model, "sampling_generator"):
            raise ConfigError("generator= applies to GANs (their EMA or raw generator); this model has one sampler.")
        options["use_ema"] = cfg.generator == "ema"
    chunks, drawn = [], 0
    while drawn < cfg.num_samples:  # bounded memory for large N
        n = min(cfg.batch_size, cfg.num_samples - drawn)
        chunk_labels = labels[drawn : drawn + n] if labels is not None else None
        chunks.append(model.sample(n, generator=generator, labels=chunk_labels, **options).float().clamp(0, 1).cpu())
        drawn += n
    images = torch.cat(chunks)
    out = output_path(cfg, RunFolder(run_folder).samples)
    as_uint8 = (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    arrays = {"images": as_uint8}
    if labels is not None:
        arrays["labels"] = labels.numpy()
    np.savez_compressed(out, **arrays)
    grid_path = out.with_suffix(".png")
    shown = images[: cfg.grid_size]
    what = f"class {int(cfg.label)}, " if cfg.label is not None else ""
    save_grid(shown, grid_path, nrow=max(1, int(math.sqrt(len(shown)))),
              caption=f"{len(shown)} of {len(images)} samples ({what}seed {cfg.seed})")
    return {"npz": str(out), "png": str(grid_path), "shape": list(as_uint8.shape)}


def output_path(cfg: DictConfig, samples: Path) -> Path:
    """The .npz to write: ``output=``, or a name that says what was drawn (count, seed, class,
    generator), made unique with ``-2``, ``-3``... so no earlier draw is overwritten."""
    if cfg.output:
        out = Path(cfg.output)
        if out.exists() or out.with_suffix(".png").exists():
            raise ConfigError(f"output {out} (or its .png) already exists; choose another output= or remove it.")
        out.parent.mkdir(parents=True, exist_ok=True)
        return out
    stem = f"sample-n{cfg.num_samples}-seed{cfg.seed}"
    stem += f"-label{int(cfg.label)}" if cfg.label is not None else ""
    stem += "-raw" if cfg.get("generator") == "raw" else ""
    samples.mkdir(parents=True, exist_ok=True)
    out, copy = samples / f"{stem}.npz", 1
    while out.exists() or out.with_suffix(".png").exists():
        copy += 1
        out = samples / f"{stem}-{copy}.npz"
    return out


@reports_user_errors("dgm-sample")
def sample_task(cfg: DictConfig) -> None:
    record = draw(cfg)
    print(f"[dgm-sample] {record['shape'][0]} samples -> {record['npz']} (grid {record['png']})")


def main() -> None:
    hydra_main("sample", sample_task)


if __name__ == "__main__":
    main()
