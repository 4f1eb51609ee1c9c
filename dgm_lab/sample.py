"""``dgm-sample``: draw samples from a trained model into an ``.npz`` and a PNG grid.

    dgm-sample ckpt_path=outputs/vae/<run> num_samples=1000
    dgm-sample ckpt_path=outputs/rbm_dbm_mnist/<run> gibbs_steps=5000   # Boltzmann machines: chain length

The npz holds ``images``: uint8 (N, H, W, C) in 0..255, and ``labels`` (N,) when the model
is class-conditional.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from torchvision.utils import save_image

from dgm_lab.checkpoints import load_checkpoint, rebuild_model, resolve_checkpoint
from dgm_lab.cli import hydra_main, reports_user_errors
from dgm_lab.errors import ConfigError
from dgm_lab.models.contract import GibbsSampler
from dgm_lab.run_folder import RunFolder
from dgm_lab.settings import SamplingSettings


def draw(cfg: DictConfig) -> dict:
    if not cfg.get("ckpt_path"):
        raise ConfigError("pass ckpt_path=<checkpoint file or run folder>, e.g. dgm-sample ckpt_path=outputs/vae/<run>.")
    SamplingSettings.from_config(cfg)  # counts and seed checked before anything is loaded
    ckpt_file, run_folder = resolve_checkpoint(cfg.ckpt_path)
    model = rebuild_model(load_checkpoint(ckpt_file))
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
        model.sample_gibbs_steps = int(cfg.gibbs_steps)
    chunks, drawn = [], 0
    while drawn < cfg.num_samples:  # bounded memory for large N
        n = min(cfg.batch_size, cfg.num_samples - drawn)
        chunk_labels = labels[drawn : drawn + n] if labels is not None else None
        chunks.append(model.sample(n, generator=generator, labels=chunk_labels).float().clamp(0, 1).cpu())
        drawn += n
    images = torch.cat(chunks)
    out = Path(cfg.output) if cfg.output else RunFolder(run_folder).samples / f"sample-n{cfg.num_samples}-seed{cfg.seed}.npz"
    out.parent.mkdir(parents=True, exist_ok=True)
    as_uint8 = (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    arrays = {"images": as_uint8}
    if labels is not None:
        arrays["labels"] = labels.numpy()
    np.savez_compressed(out, **arrays)
    grid_path = out.with_suffix(".png")
    shown = images[: cfg.grid_size]
    save_image(shown, grid_path, nrow=max(1, int(math.sqrt(len(shown)))))
    return {"npz": str(out), "png": str(grid_path), "shape": list(as_uint8.shape)}


@reports_user_errors("dgm-sample")
def sample_task(cfg: DictConfig) -> None:
    record = draw(cfg)
    print(f"[dgm-sample] {record['shape'][0]} samples -> {record['npz']} (grid {record['png']})")


def main() -> None:
    hydra_main("sample", sample_task)


if __name__ == "__main__":
    main()
