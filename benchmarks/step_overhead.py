"""Per-step framework overhead: dgm-lab's Lightning training loop versus a hand-written PyTorch
loop with the same model, data and batch size (the yardstick named in the project brief).

    python benchmarks/step_overhead.py [--epochs 3] [--model vae|rbm] [--data mnist_5k] [--optimizer adam] [key=value ...]

VAE-family models step on their ``training_loss``; an RBM steps on its CD (or PCD) statistics
written into ``.grad``. Prints milliseconds per optimizer step for both and their ratio, from one
process, timed over whole epochs after one warm-up epoch. Writes
benchmarks/results/step_overhead[_<model>].json.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir

from dgm_lab import builders
from dgm_lab.config import CONF_DIR, register_resolvers
from dgm_lab.models.boltzmann import RBM


class EpochTimer(pl.Callback):
    def __init__(self):
        self.times, self.steps = [], []

    def on_train_epoch_start(self, trainer, pl_module):
        self._start, self._step = time.perf_counter(), trainer.global_step

    def on_train_epoch_end(self, trainer, pl_module):
        self.times.append(time.perf_counter() - self._start)
        self.steps.append(trainer.global_step - self._step)


def compose_config(model: str, data: str, optimizer: str, epochs: int, output_dir: str, extra: list[str]):
    register_resolvers()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("train", overrides=[*extra,
            f"model={model}", f"data={data}", f"optimizer={optimizer}", "logger=none", f"trainer.max_epochs={epochs}",
            "trainer.accelerator=cpu", "trainer.limit_val_batches=0", f"paths.output_dir={output_dir}",
            f"paths.log_dir={output_dir}", "name=bench", "callbacks.image_samples=null",
        ])


def lightning_ms_per_step(cfg) -> float:
    pl.seed_everything(0, verbose=False)
    datamodule = builders.build_datamodule(cfg)
    builders.fill_data_fields(cfg, datamodule)
    model = builders.build_model(cfg)
    cfg.monitor.metric, cfg.monitor.mode = type(model).default_monitor
    timer = EpochTimer()
    trainer = builders.build_trainer(cfg, [*builders.build_callbacks(cfg), timer], builders.build_loggers(cfg))
    trainer.fit(model, datamodule=datamodule)
    return 1000 * sum(timer.times[1:]) / sum(timer.steps[1:])


def hand_written_ms_per_step(cfg, epochs: int) -> float:
    """The yardstick: plain PyTorch, same networks, same in-memory batches, no framework."""
    torch.manual_seed(0)
    datamodule = builders.build_datamodule(cfg)
    builders.fill_data_fields(cfg, datamodule)
    model = builders.build_model(cfg)
    datamodule.setup()
    images = datamodule.split_images("train")
    batch = cfg.data.batch_size
    optimizer = hydra.utils.instantiate(cfg.optimizer)(model.parameters())
    times, steps = [], []
    for _ in range(epochs):
        start, n = time.perf_counter(), 0
        order = torch.randperm(len(images))
        for i in range(0, len(images) - batch + 1, batch):
            x = torch.bernoulli(images[order[i : i + batch]])
            if isinstance(model, RBM):
                model.rbm.contrastive_divergence(x.flatten(1), model.cd_k, model.persistent)
            else:
                loss = model.training_loss(x)["loss"]
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
            optimizer.step()
            n += 1
        times.append(time.perf_counter() - start)
        steps.append(n)
    return 1000 * sum(times[1:]) / sum(steps[1:])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--model", default="vae")
    parser.add_argument("--data", default="mnist_5k")
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument("overrides", nargs="*", help="more key=value overrides for both loops' config")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_config(args.model, args.data, args.optimizer, args.epochs, tmp, args.overrides)
        hand = hand_written_ms_per_step(cfg.copy(), args.epochs)
        framework = lightning_ms_per_step(cfg)
    result = {
        "model": args.model, "data": args.data, "optimizer": args.optimizer, "overrides": args.overrides, "batch_size": cfg.data.batch_size, "epochs_timed": args.epochs - 1,
        "hand_written_ms_per_step": round(hand, 3), "dgm_lab_ms_per_step": round(framework, 3),
        "ratio_dgm_lab_over_hand": round(framework / hand, 3),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__, "lightning": pl.__version__,
    }
    print(json.dumps(result, indent=2))
    out = Path(__file__).parent / "results" / ("step_overhead.json" if args.model == "vae" else f"step_overhead_{args.model}.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
