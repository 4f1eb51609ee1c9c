"""Peer library: the same MLP VAE (784-200-200-50 tanh, Bernoulli decoder, Adam 1e-3) on the same
statically binarized MNIST batches, trained by pythae's ``BaseTrainer`` and by dgm-lab; seconds
per epoch, validation on the same 1,000 images included. pythae lives in its own virtualenv
(``PYTHAE_PYTHON``, default /work/pythae-venv/bin/python) that reuses this interpreter's torch
through a ``.pth`` line; the two sides alternate as child processes.

    python -m benchmarks.peer_pythae --side pythae|dgm-lab [--smoke]   # one child: prints s/epoch
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.timing import alternate, row

REPO = Path(__file__).resolve().parent.parent
PYTHAE_PYTHON = os.environ.get("PYTHAE_PYTHON", "/work/pythae-venv/bin/python")
EPOCHS = 3  # the first is warm-up


def overrides(smoke: bool) -> list[str]:
    data = ["data=digits", "data.batch_size=64"] if smoke else ["data=mnist", "data.train_subset=6000", "data.batch_size=100"]
    return ["model=vae", *data, "data.binarize=static", "data.eval_batch_size=500", "trainer.limit_val_batches=2",
            f"trainer.max_epochs={EPOCHS}"]


def splits(cfg):
    from dgm_lab import builders

    data = builders.build_datamodule(cfg)
    builders.fill_data_fields(cfg, data)
    data.setup()
    return data, data.splits["train"].images, data.splits["val"].images[: 2 * data.eval_batch_size]


def dgm_lab_epochs(smoke: bool) -> list[float]:
    import pytorch_lightning as pl

    from benchmarks.step import Interleave, compose_config, quiet
    from dgm_lab import builders

    class NoHand:
        def epoch(self):
            pass

    with tempfile.TemporaryDirectory() as tmp, quiet():
        cfg = compose_config(overrides(smoke), tmp)
        pl.seed_everything(0, verbose=False)
        data, _, _ = splits(cfg)
        model = builders.build_model(cfg)
        timer = Interleave(NoHand())
        trainer = builders.build_trainer(cfg, [*builders.build_callbacks(cfg, model, data), timer], builders.build_loggers(cfg))
        trainer.fit(model, datamodule=data)
    return timer.lightning


def pythae_epochs(smoke: bool) -> list[float]:
    import torch
    from pythae.data.datasets import BaseDataset
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.trainers import BaseTrainer, BaseTrainerConfig
    from pythae.trainers.training_callbacks import TrainingCallback

    from benchmarks.step import compose_config

    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_config(overrides(smoke), tmp)
        data, train, val = splits(cfg)
        shape, latent = tuple(data.data_shape), 50
        pixels = int(torch.tensor(shape).prod())

        def mlp(n_in, n_out):
            return torch.nn.Sequential(torch.nn.Linear(n_in, 200), torch.nn.Tanh(), torch.nn.Linear(200, 200),
                                       torch.nn.Tanh(), torch.nn.Linear(200, n_out))

        class Encoder(BaseEncoder):
            def __init__(self):
                super().__init__()
                self.net = mlp(pixels, 2 * latent)

            def forward(self, x):
                mean, log_var = self.net(x.flatten(1)).chunk(2, -1)
                return ModelOutput(embedding=mean, log_covariance=log_var)

        class Decoder(BaseDecoder):
            def __init__(self):
                super().__init__()
                self.net = mlp(latent, pixels)

            def forward(self, z):
                return ModelOutput(reconstruction=torch.sigmoid(self.net(z)).view(-1, *shape))

        class EpochTimer(TrainingCallback):
            def __init__(self):
                self.times = []

            def on_epoch_begin(self, training_config, **kwargs):
                self.start = time.process_time()

            def on_epoch_end(self, training_config, **kwargs):
                self.times.append(time.process_time() - self.start)

        torch.manual_seed(0)
        model = VAE(VAEConfig(input_dim=shape, latent_dim=latent, reconstruction_loss="bce"),
                    encoder=Encoder(), decoder=Decoder())
        config = BaseTrainerConfig(output_dir=tmp, num_epochs=EPOCHS, learning_rate=1e-3, no_cuda=True,
                                   per_device_train_batch_size=data.batch_size, per_device_eval_batch_size=500)
        timer = EpochTimer()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            BaseTrainer(model, train_dataset=BaseDataset(train, torch.zeros(len(train))),
                        eval_dataset=BaseDataset(val, torch.zeros(len(val))), training_config=config, callbacks=[timer]).train()
    return timer.times


def side(python: str, name: str, smoke: bool):
    def timed() -> float:
        result = subprocess.run([python, "-m", "benchmarks.peer_pythae", "--side", name, *(["--smoke"] if smoke else [])],
                                cwd=REPO, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        if result.returncode:
            raise RuntimeError(f"{name} side failed: {result.stderr[-1500:]}")
        return float(result.stdout.split()[-1])
    return timed


def run(smoke: bool, repeats: int) -> list[dict]:
    names = ("dgm-lab (Lightning fit)", "pythae BaseTrainer", "CPU s/epoch")
    probe = subprocess.run([PYTHAE_PYTHON, "-c", "import pythae, torch; print(torch.__version__)"],
                           capture_output=True, text=True) if Path(PYTHAE_PYTHON).exists() else None
    if probe is None or probe.returncode:
        why = "no pythae virtualenv" if probe is None else probe.stderr.strip().splitlines()[-1]
        return [row("peer library", "MLP VAE epoch incl. validation", *names, None, note=f"not measured: {why}")]
    result = alternate(side(sys.executable, "dgm-lab", smoke), side(PYTHAE_PYTHON, "pythae", smoke), repeats)
    return [row("peer library", "MLP VAE epoch incl. validation", *names, result,
                note=f"pythae 0.1.2 in its own venv, same torch {probe.stdout.strip()}; dgm-lab also writes "
                     "its sample grids and checkpoints, pythae keeps its best model in memory")]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--side", choices=("pythae", "dgm-lab"), required=True)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    times = (pythae_epochs if args.side == "pythae" else dgm_lab_epochs)(args.smoke)
    print(statistics.median(times[1:]))
