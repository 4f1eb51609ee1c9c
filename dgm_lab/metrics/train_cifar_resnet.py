"""Train the CIFAR-10 feature extractor that ships in ``dgm_lab/metrics/weights/`` (``cifar_resnet``).

    DGM_DATA_DIR=/path/to/data python -m dgm_lab.metrics.train_cifar_resnet --run-dir runs/cifar_resnet
    python -m dgm_lab.metrics.train_cifar_resnet --run-dir runs/cifar_resnet --resume   # after a stop

Trains :class:`~dgm_lab.metrics.cifar_resnet.CifarResNet` on the 45,000-image train split of
``data=cifar10_jpeg`` (``<data_dir>/CIFAR-10-images``; 5,000 train images held out for validation)
with a recipe chosen for a CPU: SGD with Nesterov momentum, a linear warm-up then linear decay of
the learning rate to zero, label smoothing, random 4-pixel translations (reflected borders) and
horizontal flips drawn per image on the in-memory batch, bfloat16 autocast (AMX/AVX-512 CPUs run
it several times faster than float32). Every epoch logs the test accuracy and writes ``last.pt``
(model, optimizer, schedule, history) in ``--run-dir``, so ``--resume`` continues where it stopped.
At the end the half-precision weights file is written to ``--out-dir``, loaded back as the
extractor loads it, and its float32 test accuracy, date, command and hash are recorded in
``ACCURACY.json`` beside it. Target: >= 88% test accuracy on the JPEG test split.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from dgm_lab.config import CONF_DIR
from dgm_lab.data import ImageFolderDataModule
from dgm_lab.errors import UserError
from dgm_lab.files import write_atomically
from dgm_lab.metrics.cifar_resnet import (
    WEIGHTS,
    WIDTHS,
    CifarResNet,
    load_cifar_resnet,
    weights_record,
)
from dgm_lab.metrics.classifier import accuracy

DATASET = "cifar10_jpeg"
TARGET_ACCURACY = 0.88
PAD = 4  # random translations of up to 4 pixels, the standard CIFAR augmentation
# Settings a resumed run takes from its checkpoint: changing them halfway would be another run.
TRAINING_SETTINGS = ("data_root", "val_size", "train_limit", "epochs", "batch_size", "lr", "warmup", "momentum",
                     "weight_decay", "label_smoothing", "precision", "seed", "widths")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True, help="checkpoints and history (last.pt, history.json)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --run-dir with its settings")
    parser.add_argument("--data-dir", default=None, help="default: $DGM_DATA_DIR, else ./data")
    parser.add_argument("--data-root", default=None, help="default: <data-dir>/CIFAR-10-images")
    parser.add_argument("--val-size", type=int, default=None, help="default: data=cifar10_jpeg's (5000)")
    parser.add_argument("--train-limit", type=int, default=None, help="train on the first N images only (tests)")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=0.2, help="peak learning rate")
    parser.add_argument("--warmup", type=float, default=0.25, help="fraction of the steps spent warming up")
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--label-smoothing", type=float, default=0.2)
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16", help="autocast while training")
    parser.add_argument("--widths", default=",".join(map(str, WIDTHS)), help="stem,stage1,stage2,stage3 channels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out-dir", default=str(WEIGHTS.parent))
    return parser.parse_args(argv)


def load_data(args: argparse.Namespace) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """uint8 (N, 3, 32, 32) images and int64 labels of the train, val and test splits of the
    ``cifar10_jpeg`` preset (its image size, channels and validation size; the image cache)."""
    preset = OmegaConf.load(Path(CONF_DIR) / "data" / f"{DATASET}.yaml")
    data_dir = Path(args.data_dir or os.environ.get("DGM_DATA_DIR") or "data")
    root = args.data_root or str(data_dir / "CIFAR-10-images")
    datamodule = ImageFolderDataModule(root=root, image_size=preset.image_size, channels=preset.channels,
                                       val_size=args.val_size or preset.val_size, name=DATASET)
    splits = {split: datamodule.reference_images(split) for split in ("train", "val", "test")}
    if args.train_limit:
        splits["train"] = tuple(part[: args.train_limit] for part in splits["train"])
    return {split: (images.contiguous(), labels.long()) for split, (images, labels) in splits.items()}


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float (B, C, H, W) in [0, 1], each image translated by up to PAD pixels
    (reflected borders) and flipped left-right with probability 1/2, all drawn from ``generator``."""
    batch, _, height, width = images.shape
    padded = F.pad(images.float().div_(255), (PAD, PAD, PAD, PAD), mode="reflect")
    top = torch.randint(0, 2 * PAD + 1, (batch, 1), generator=generator)
    left = torch.randint(0, 2 * PAD + 1, (batch, 1), generator=generator)
    rows = (top + torch.arange(height))[:, None, :, None]
    columns = (left + torch.arange(width))
    flip = torch.rand(batch, 1, generator=generator) < 0.5
    columns = torch.where(flip, columns.flip(1), columns)[:, None, None, :]
    return padded[torch.arange(batch)[:, None, None, None], torch.arange(images.shape[1])[None, :, None, None],
                  rows, columns]


def schedule(step: int, total: int, warmup: float) -> float:
    """Learning-rate factor: linear from 0 to 1 over the warm-up steps, then linear to 0 at ``total``."""
    peak = max(1, round(warmup * total))
    return step / peak if step < peak else max(0.0, (total - step) / max(1, total - peak))


def autocast(precision: str):
    return torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()


def split_accuracy(net: CifarResNet, split: tuple[torch.Tensor, torch.Tensor], precision: str) -> float:
    """Fraction of the uint8 images of ``split`` classified right, under ``precision`` autocast."""
    images, labels = split
    with autocast(precision):
        return accuracy(net, images.float().div(255), labels, batch_size=500)


def train(args: argparse.Namespace, run_dir: Path) -> tuple[CifarResNet, list[dict], dict]:
    """Train from scratch or from ``run_dir/last.pt``; returns the net, the history and the splits."""
    checkpoint_path = run_dir / "last.pt"
    if args.resume and not checkpoint_path.exists():
        raise UserError(f"--resume found no {checkpoint_path} to continue; drop --resume to start this run.")
    saved = torch.load(checkpoint_path, map_location="cpu", weights_only=True) if args.resume else None
    if saved:
        for key in TRAINING_SETTINGS:
            setattr(args, key, saved["settings"][key])
    elif checkpoint_path.exists():
        raise UserError(f"{checkpoint_path} already holds a run; add --resume to continue it, or pick another "
                        "--run-dir.")
    widths = tuple(int(w) for w in str(args.widths).split(","))
    torch.manual_seed(args.seed)
    splits = load_data(args)
    train_images, train_labels = splits["train"]
    net = CifarResNet(widths=widths).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=args.momentum, nesterov=True,
                                weight_decay=args.weight_decay)
    steps_per_epoch = len(train_images) // args.batch_size
    if steps_per_epoch < 1:
        raise UserError(f"--batch-size {args.batch_size} is larger than the {len(train_images)} training images.")
    total = args.epochs * steps_per_epoch
    history: list[dict] = []
    start_epoch = 0
    if saved:
        net.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        history, start_epoch = saved["history"], saved["epoch"]
        print(f"resumed {checkpoint_path} after epoch {start_epoch}/{args.epochs}", flush=True)
    settings = {key: getattr(args, key) for key in TRAINING_SETTINGS}
    for epoch in range(start_epoch, args.epochs):
        started = time.time()
        net.train()
        generator = torch.Generator().manual_seed(args.seed * 100_003 + epoch)  # resumable: one stream per epoch
        order = torch.randperm(len(train_images), generator=generator)
        loss_sum, hits = 0.0, 0
        for index in range(steps_per_epoch):
            step = epoch * steps_per_epoch + index
            for group in optimizer.param_groups:
                group["lr"] = args.lr * schedule(step, total, args.warmup)
            batch = order[index * args.batch_size:(index + 1) * args.batch_size]
            images = augment(train_images[batch], generator).contiguous(memory_format=torch.channels_last)
            labels = train_labels[batch]
            with autocast(args.precision):
                logits = net(images)[1]
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=args.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item()
            hits += int((logits.argmax(1) == labels).sum())
        seconds = time.time() - started
        row = {"epoch": epoch + 1, "train_loss": round(loss_sum / steps_per_epoch, 4),
               "train_accuracy": round(hits / (steps_per_epoch * args.batch_size), 4),
               "test_accuracy": round(split_accuracy(net, splits["test"], args.precision), 4),
               "train_images_per_s": round(steps_per_epoch * args.batch_size / seconds, 1),
               "epoch_seconds": round(time.time() - started, 1),
               "time": datetime.datetime.now(datetime.timezone.utc).strftime("%H:%M:%S")}
        history.append(row)
        print(json.dumps(row), flush=True)
        state = {"model": net.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch + 1,
                 "history": history, "settings": settings}
        write_atomically(checkpoint_path, lambda path, state=state: torch.save(state, path))
        (run_dir / "history.json").write_text(json.dumps(history, indent=1) + "\n")
    return net, history, splits


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    if args.epochs < 1 or args.batch_size < 1 or args.lr <= 0 or not 0 <= args.warmup < 1:
        raise UserError("--epochs and --batch-size must be positive, --lr above 0 and --warmup in [0, 1).")
    if args.threads:
        torch.set_num_threads(args.threads)
    run_dir = Path(args.run_dir).expanduser()
    run_dir.mkdir(parents=True, exist_ok=True)
    net, history, splits = train(args, run_dir)

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / WEIGHTS.name
    record = weights_record(net, DATASET)
    write_atomically(weights, lambda path: torch.save(record, path))
    shipped = load_cifar_resnet(weights)  # the accuracy recorded is that of the file, as the extractor loads it
    result = {
        "test_accuracy": round(split_accuracy(shipped, splits["test"], "fp32"), 5),
        "val_accuracy": round(split_accuracy(shipped, splits["val"], "fp32"), 5),
        "target_test_accuracy": TARGET_ACCURACY,
        "train_images": len(splits["train"][0]), "val_images": len(splits["val"][0]),
        "test_images": len(splits["test"][0]),
        **{key: getattr(args, key) for key in TRAINING_SETTINGS if key != "data_root"},
        "num_parameters": sum(p.numel() for p in shipped.parameters()),
        "storage": "float16 tensors, loaded as float32",
        "train_seconds": round(sum(row["epoch_seconds"] for row in history), 1),
        "test_accuracy_per_epoch": [row["test_accuracy"] for row in history],
        "torch": torch.__version__, "date": datetime.date.today().isoformat(),
        "command": "python -m dgm_lab.metrics.train_cifar_resnet " + " ".join(argv if argv is not None else sys.argv[1:]),
        "file": weights.name,
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        "file_bytes": weights.stat().st_size,
    }
    record_path = out_dir / "ACCURACY.json"
    records = json.loads(record_path.read_text()) if record_path.exists() else {}
    records[DATASET] = result
    write_atomically(record_path, lambda path: path.write_text(json.dumps(records, indent=2) + "\n"))
    print(json.dumps(result, indent=2))
    if result["test_accuracy"] < TARGET_ACCURACY:
        print(f"warning: test accuracy {result['test_accuracy']} is below the target {TARGET_ACCURACY}", file=sys.stderr)
    if not math.isfinite(history[-1]["train_loss"]):
        print("warning: the training loss is not finite; lower --lr", file=sys.stderr)
    return result


if __name__ == "__main__":
    try:
        main()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
