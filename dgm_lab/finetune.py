"""``dgm-finetune``: generative pre-training for a classifier, measured against random initialisation.

    dgm-finetune ckpt_path=outputs/rbm_cd_mnist/<run> data.num_labeled=100
    dgm-finetune ckpt_path=outputs/vae_mnist/<run> data.num_labeled=1000 steps=3000

The classifier (``dgm_lab.pretrained``) starts from the checkpoint's recognition weights; the
baseline is the same architecture from PyTorch's default initialisation, with the same
classification layer, steps, optimizer (Adam), batch order and seed. Both see the labelled subset
of the checkpoint's training split (``data.num_labeled``, balanced, ``data.label_seed``) in grey
levels in [0, 1], and are scored on every image of val and test. ``summary.json`` in the run folder
holds ``{split}/error`` (pre-trained) and ``{split}/error_random_init``.
"""

from __future__ import annotations

import logging
import time

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from torch.nn import functional as F

from dgm_lab import builders
from dgm_lab.checkpoints import load_checkpoint, rebuild_model, resolve_checkpoint, saved_config
from dgm_lab.cli import hydra_main, reports_user_errors
from dgm_lab.errors import ConfigError, require
from dgm_lab.metrics.specs import metric_key
from dgm_lab.pretrained import classifier
from dgm_lab.run_folder import RunFolder, Summary

log = logging.getLogger("dgm_lab")


def labelled_split(datamodule, split: str, index: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(float images (N, C, H, W) in [0, 1], labels) of a split in grey levels, every label known."""
    images, labels = datamodule.reference_images(split)
    if index is not None:
        images, labels = images[index], labels[index]
    return images.float().div(255), labels


def fit(net: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, steps: int, batch_size: int, lr: float,
        weight_decay: float, seed: int) -> float:
    """``steps`` Adam steps of cross-entropy on reshuffled passes over (images, labels); the batch
    order comes from ``seed`` alone. Returns the last training loss."""
    optimizer = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    order = torch.Generator().manual_seed(seed)
    batch_size = min(batch_size, len(images))
    step, loss = 0, torch.tensor(float("nan"))
    net.train()
    while step < steps:
        for batch in torch.randperm(len(images), generator=order).split(batch_size):
            if step == steps:
                break
            loss = F.cross_entropy(net(images[batch]), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
    return float(loss.detach())


@torch.no_grad()
def error_rate(net: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, chunk: int = 2000) -> float:
    net.eval()
    wrong = sum(int((net(images[i : i + chunk]).argmax(1) != labels[i : i + chunk]).sum())
                for i in range(0, len(images), chunk))
    return wrong / len(images)


def finetune(cfg: DictConfig) -> Summary:
    started = time.time()
    require(bool(cfg.get("ckpt_path")), "pass ckpt_path=<run folder or checkpoint of a vae, rbm, dbn or dbm run>.")
    for key in ("steps", "batch_size"):
        value = cfg.get(key)
        require(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                f"{key} must be a positive integer, got {value!r}.")
    require(cfg.lr > 0, f"lr must be positive, got {cfg.lr}.")
    ckpt_file, _ = resolve_checkpoint(cfg.ckpt_path)
    checkpoint = load_checkpoint(ckpt_file)
    saved = saved_config(checkpoint, data_dir=cfg.paths.data_dir)
    with open_dict(saved):
        for key, value in cfg.data.items():
            saved.data[key] = value
    model = rebuild_model(checkpoint, saved)
    datamodule = builders.build_datamodule(saved)
    datamodule.setup()
    num_classes = datamodule.num_classes
    if num_classes < 2:
        raise ConfigError(f"the data of this checkpoint ({datamodule.name}) has no classes to learn.")
    train = labelled_split(datamodule, "train", datamodule.labeled_indices())
    held_out = {split: labelled_split(datamodule, split) for split in ("val", "test") if split in datamodule.splits}

    metrics, training = {}, {}
    for pretrained, suffix in ((True, ""), (False, "_random_init")):
        pl.seed_everything(cfg.seed, verbose=False)
        net = classifier(model, num_classes, pretrained=pretrained, seed=cfg.seed)
        fit_started = time.time()
        last_loss = fit(net, *train, cfg.steps, cfg.batch_size, cfg.lr, cfg.weight_decay, cfg.seed)
        training[f"train/loss{suffix}"] = last_loss
        training[f"fit_s{suffix}"] = round(time.time() - fit_started, 2)
        metrics[metric_key("train", "error") + suffix] = error_rate(net, *train)
        for split, (images, labels) in held_out.items():
            metrics[metric_key(split, "error") + suffix] = error_rate(net, images, labels)
    folder = RunFolder(cfg.paths.output_dir)
    folder.path.mkdir(parents=True, exist_ok=True)
    summary = Summary(status="completed", metrics={**metrics, "train/loss": training["train/loss"],
                                                   "train/loss_random_init": training["train/loss_random_init"]},
                      seed=cfg.seed, run_dir=str(folder.path),
                      data={"name": datamodule.name, "shape": list(datamodule.data_shape),
                            "class_names": list(datamodule.class_names), "labels": datamodule.label_record()},
                      timing={key: value for key, value in training.items() if key.startswith("fit_s")},
                      wall_time_s=round(time.time() - started, 2),
                      config={**OmegaConf.to_container(cfg, resolve=True), "checkpoint": str(ckpt_file),
                              "pretrained_model": saved.model._target_, "model": OmegaConf.to_container(saved.model)},
                      diagnostics={"budget": {"steps": cfg.steps, "batch_size": min(cfg.batch_size, len(train[0])),
                                              "optimizer": "Adam", "lr": cfg.lr, "weight_decay": cfg.weight_decay,
                                              "labelled_images": len(train[0])}})
    folder.write_summary(summary)
    for logger in builders.build_loggers(cfg):
        logger.log_metrics(summary.metrics, step=cfg.steps)
        logger.finalize("success")
    return summary


@reports_user_errors("dgm-finetune")
def finetune_task(cfg: DictConfig) -> None:
    summary = finetune(cfg)
    shown = ", ".join(f"{key}={value:.4f}" for key, value in summary.metrics.items() if "error" in key)
    print(f"[dgm-finetune] {shown}\n[dgm-finetune] run folder: {summary.run_dir}")


def main() -> None:
    hydra_main("finetune", finetune_task)


if __name__ == "__main__":
    main()
