"""Train the LeNet feature extractors that ship in ``dgm_lab/metrics/weights/``.

    DGM_DATA_DIR=/path/to/data python -m dgm_lab.metrics.train_lenet --data mnist
    DGM_DATA_DIR=/path/to/data python -m dgm_lab.metrics.train_lenet --data fashion_mnist --epochs 12

Trains on the 55,000-image train split (grey levels, no binarization, no augmentation), reports
accuracy on the 5,000-image validation split and the official 10,000-image test split, writes
``lenet_<data>.pt`` (a dict with ``state_dict``) and records the test accuracy, date, command and
file hash in ``ACCURACY.json`` beside it. Targets: >= 99% (MNIST), >= 90% (Fashion-MNIST).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import sys
import time
from pathlib import Path

import torch

from dgm_lab.data import FashionMNISTDataModule, MNISTDataModule
from dgm_lab.metrics.classifier import accuracy, fit
from dgm_lab.metrics.lenet import WEIGHTS_DIR, LeNet

DATAMODULES = {"mnist": MNISTDataModule, "fashion_mnist": FashionMNISTDataModule}
TARGET_ACCURACY = {"mnist": 0.99, "fashion_mnist": 0.90}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=sorted(DATAMODULES), required=True)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None, help="default: $DGM_DATA_DIR, else ./data")
    parser.add_argument("--out-dir", default=str(WEIGHTS_DIR))
    args = parser.parse_args(argv)

    started = time.time()
    torch.manual_seed(args.seed)
    datamodule = DATAMODULES[args.data](binarize="none", data_dir=args.data_dir)
    datamodule.setup()
    splits = datamodule.splits
    net = LeNet()
    fit(net, splits["train"].images, splits["train"].labels, args.epochs, args.lr, args.batch_size, args.seed)
    result = {
        "test_accuracy": round(accuracy(net, splits["test"].images, splits["test"].labels), 5),
        "val_accuracy": round(accuracy(net, splits["val"].images, splits["val"].labels), 5),
        "target_test_accuracy": TARGET_ACCURACY[args.data],
        "train_images": len(splits["train"]), "test_images": len(splits["test"]),
        "epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size, "seed": args.seed,
        "num_parameters": sum(p.numel() for p in net.parameters()),
        "torch": torch.__version__, "date": datetime.date.today().isoformat(),
        "train_seconds": round(time.time() - started, 1),
        "command": "python -m dgm_lab.metrics.train_lenet " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / f"lenet_{args.data}.pt"
    torch.save({"state_dict": net.state_dict(), "num_classes": 10, "dataset": args.data}, weights)
    result["file"] = weights.name
    result["sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    result["file_bytes"] = weights.stat().st_size
    record_path = out_dir / "ACCURACY.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    record[args.data] = result
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if result["test_accuracy"] < TARGET_ACCURACY[args.data]:
        print(f"warning: test accuracy {result['test_accuracy']} is below the target {TARGET_ACCURACY[args.data]}",
              file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
