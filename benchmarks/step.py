"""Training step: dgm-lab (the LightningModule and Trainer that ``dgm-train`` builds from the Hydra
config, fitted over its in-memory batches) versus a minimal hand-written PyTorch loop with the same
networks, batches, optimizer and data.

The two alternate epoch by epoch inside one process: a callback runs one hand-written epoch at the
start of every Lightning epoch, outside the Lightning epoch's timing, so each pair sees the same
machine load. ``pure`` epochs have no validation, checkpoint or sample grid (the cost per optimizer
step); ``epoch`` epochs are what a run does every epoch: validation (two batches of the eval batch
size on both sides), a checkpoint and the sample grids, which the hand-written loop also writes.
The small models (``BARE_CASES``) are also fitted by a bare Lightning Trainer (``bare_trainer``):
their ratio then splits into what Lightning's loop costs and what dgm-lab's Trainer adds.
"""

from __future__ import annotations

import contextlib
import io
import math
import tempfile
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from benchmarks.timing import clock, row, summarize
from dgm_lab import builders
from dgm_lab.config import CONF_DIR, register_resolvers
from dgm_lab.models.boltzmann import BoltzmannModule
from dgm_lab.models.contract import Interpolates, Reconstructs
from dgm_lab.models.gan import GAN
from dgm_lab.models.vae import IWAE
from dgm_lab.monitor import fill_monitor

VAL_BATCHES = 2
# name -> (overrides, overrides in smoke mode). train_subset sizes an epoch (steps = subset / batch).
CASES = {
    "vae_mlp": (["model=vae", "data=mnist", "data.train_subset=3000"],
                ["model=vae", "data=digits", "data.batch_size=64"]),
    "iwae_k5": (["model=iwae", "model.k=5", "data=mnist", "data.train_subset=2000"],
                ["model=iwae", "model.k=5", "data=digits", "data.batch_size=64"]),
    "dcgan": (["model=dcgan", "data=mnist", "data.batch_size=64", "data.train_subset=384"],
              ["model=dcgan", "data=digits", "data.batch_size=64", "data.train_subset=256"]),
    "rbm_cd1": (["model=rbm", "model.cd_k=1", "optimizer=sgd", "optimizer.lr=0.05", "data=mnist",
                 "data.train_subset=3000",
                 "model.sample_gibbs_steps=100"],
                ["model=rbm", "model.cd_k=1", "optimizer=sgd", "data=digits", "data.batch_size=64",
                 "model.sample_gibbs_steps=10"]),
    "conv_vae_rgb": (["model=conv_vae_rgb", "data=cifar10_jpeg", "data.batch_size=32", "data.train_subset=192",
                      "data.eval_batch_size=64"],
                     ["model=conv_vae_rgb", "data=digits", "data.batch_size=64", "model.encoder.channels=8",
                      "model.decoder.channels=8", "model.encoder.hidden=32", "model.decoder.hidden=32"]),
}
# The small models whose ratio is above 1.05: also fitted by a bare Lightning Trainer, which splits
# their overhead into Lightning's loop and dgm-lab's callbacks, logger and progress bar.
BARE_CASES = ("vae_mlp", "rbm_cd1")
PURE = ["trainer.limit_val_batches=0", "callbacks.image_samples=null", "callbacks.weight_filters=null",
        "callbacks.model_checkpoint=null", "+trainer.enable_checkpointing=false"]
# A GAN on MNIST-like data picks its best checkpoint by an automatic LeNet FID at each validation
# (dgm_lab/monitor.py), which the hand-written loop has no counterpart for: off, so both sides do the same work.
WHOLE = [f"trainer.limit_val_batches={VAL_BATCHES}", "monitor.auto_quality=false"]


def compose_config(overrides: list[str], output_dir: str) -> DictConfig:
    register_resolvers()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["logger=none", "trainer.accelerator=cpu", "name=bench", *overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = output_dir
    fill_monitor(cfg, builders.build_datamodule(cfg))  # as dgm-train picks the best checkpoint (a GAN: the newest)
    return cfg


@contextlib.contextmanager
def quiet():
    """Lightning's progress bar (stdout) and notices (stderr) still run, into a buffer."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


class HandLoop:
    """Plain PyTorch around the same model: shuffled index batches of the in-memory split, the
    binarization the datamodule does, the model's loss (or CD statistics), ``optimizer.step``."""

    def __init__(self, cfg: DictConfig, validate: bool, folder: Path, device: str = "cpu", amp: bool = False,
                 channels_last: bool = False):
        torch.manual_seed(cfg.seed)
        datamodule = builders.build_datamodule(cfg)
        builders.fill_data_fields(cfg, datamodule)
        datamodule.setup()
        self.device = torch.device(device)
        self.model = builders.build_model(cfg).to(self.device)
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.amp = amp  # bf16 autocast, as trainer.precision=bf16-mixed
        self.images = datamodule.splits["train"].images.to(self.device)
        # a GAN iteration takes n_critic batches: one per discriminator step (GAN.training_step)
        self.pieces = self.model.n_critic if isinstance(self.model, GAN) else 1
        self.batch = datamodule.batch_size * self.pieces
        self.dynamic = datamodule.binarize == "dynamic"
        self.val = datamodule.splits["val"].images[: VAL_BATCHES * datamodule.eval_batch_size].to(self.device)
        self.eval_batch = datamodule.eval_batch_size
        self.optimizers = [self.model.build_optimizer(key, params)
                           for key, params in self.model.optimized_parameters().items()]
        self.validate, self.folder, self.steps = validate, folder, 0

    def epoch(self) -> None:
        model = self.model
        model.train()
        with torch.enable_grad(), torch.autocast(self.device.type, torch.bfloat16, enabled=self.amp):
            order = torch.randperm(len(self.images), device=self.device)
            for start in range(0, len(self.images) - self.batch + 1, self.batch):
                x = self.images[order[start : start + self.batch]]
                self.step(torch.bernoulli(x) if self.dynamic else x)
        if self.validate:
            self.validation()

    def step(self, x: torch.Tensor) -> None:
        model = self.model
        self.steps += 1
        if isinstance(model, GAN):
            g_opt, d_opt = self.optimizers
            reals = model.to_model_space(x).tensor_split(self.pieces)
            for real in reals:
                d_opt.zero_grad(set_to_none=True)
                with torch.no_grad():
                    fake = model.generator(torch.randn(len(real), model.latent_dim, device=self.device), None)
                model.loss.discriminator(model.discriminator(real, None).float(),
                                         model.discriminator(fake, None).float()).backward()
                d_opt.step()
            g_opt.zero_grad(set_to_none=True)
            fake = model.generator(torch.randn(len(reals[0]), model.latent_dim, device=self.device), None)
            model.loss.generator(model.discriminator(fake, None).float()).backward()
            g_opt.step()
            # the model's own EMA update: the same average and, for a generator with batch norm, the
            # same re-estimate of its statistics before validation samples from it (as dgm-lab does)
            model.generator_steps += 1
            model.update_ema()
        elif isinstance(model, BoltzmannModule):
            model.rbm.contrastive_divergence(model.to_visible(x), model.cd_k, model.persistent)
            self.optimizers[0].step()
        else:
            loss = model.training_loss(x)["loss"]
            self.optimizers[0].zero_grad(set_to_none=True)
            loss.backward()
            self.optimizers[0].step()

    @torch.no_grad()
    def validation(self) -> None:
        """What a user's loop does every epoch: a validation pass, a checkpoint, a sample grid."""
        from torchvision.utils import save_image

        model = self.model
        model.eval()
        for start in range(0, len(self.val), self.eval_batch):
            x = self.val[start : start + self.eval_batch]
            if isinstance(model, GAN):
                fake = model.sampling_generator()(torch.randn(len(x), model.latent_dim, device=self.device), None)
                model.loss.discriminator(model.discriminator(model.to_model_space(x), None), model.discriminator(fake, None))
            elif isinstance(model, BoltzmannModule):
                model.reconstruction_error(x)
            else:
                model.elbo_terms(x)["elbo"].mean()
                if isinstance(model, IWAE):  # its validation also scores the k-sample bound (val/iwae_bound)
                    (torch.logsumexp(model.log_importance_weights(x, model.k), dim=0) - math.log(model.k)).mean()
        if isinstance(model, BoltzmannModule):
            monitor = self.val[: model.monitor_examples].flatten(1)
            model.rbm.free_energy(monitor).mean()
            model.rbm.pseudo_log_likelihood(monitor).mean()
        torch.save(model.state_dict(), self.folder / "hand.pt")
        grids = [model.sample(64, generator=torch.Generator().manual_seed(0))]
        fixed = self.val[:32]
        if isinstance(model, Reconstructs):
            grids.append(torch.cat([fixed, model.reconstruct(fixed)]))
        if isinstance(model, Interpolates):
            grids.append(model.interpolate(fixed[:8], fixed[8:16], 10))
        for i, grid in enumerate(grids):
            save_image(grid.float().clamp(0, 1).cpu(), self.folder / f"hand_{i}.png", nrow=8)
        model.train()


class Interleave(pl.Callback):
    """Runs one hand-written epoch at the start of every Lightning epoch; times both."""

    def __init__(self, hand: HandLoop, clock=clock):
        self.hand, self.lightning, self.hand_times, self._start = hand, [], [], None
        self.clock = clock

    def on_train_epoch_start(self, trainer, pl_module):
        if self._start is not None:
            self.lightning.append(self.clock() - self._start)
        start = self.clock()
        self.hand.epoch()
        self.hand_times.append(self.clock() - start)
        self._start = self.clock()

    def on_train_end(self, trainer, pl_module):
        self.lightning.append(self.clock() - self._start)


def bare_trainer(cfg: DictConfig, interleave: Interleave) -> pl.Trainer:
    """A plain Lightning Trainer for a pure-step epoch: no logger, checkpoint, progress bar,
    summary, validation or dgm-lab callback; only the timing callback."""
    return pl.Trainer(accelerator=cfg.trainer.accelerator, devices=1, max_epochs=cfg.trainer.max_epochs,
                      logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, limit_val_batches=0, callbacks=[interleave])


def measure(overrides: list[str], epochs: int, whole_epoch: bool, framework_overrides: list[str] = (),
            hand_options: dict | None = None, clock=clock, bare_lightning: bool = False) -> dict:
    """Alternating Lightning and hand-written epochs; the first pair is warm-up. Costs are ms per
    step. ``framework_overrides`` go to the dgm-lab side only (the options under test);
    ``hand_options`` (device, amp, channels_last) set up the hand-written side; ``clock`` is CPU
    time unless given (a GPU run passes a synchronizing wall clock). ``bare_lightning`` fits the
    same LightningModule with ``bare_trainer`` instead of dgm-train's Trainer: what Lightning's
    loop costs by itself, so that the rest of the dgm-lab ratio is dgm-lab's own."""
    if bare_lightning and whole_epoch:
        raise ValueError("bare_lightning measures pure steps: a bare Trainer has no validation, checkpoint or grid.")
    with tempfile.TemporaryDirectory() as tmp, quiet():
        cfg = compose_config([*overrides, *(WHOLE if whole_epoch else PURE), f"trainer.max_epochs={epochs}"], tmp)
        hand = HandLoop(cfg.copy(), whole_epoch, Path(tmp), **(hand_options or {}))
        framework_cfg = compose_config([*overrides, *(WHOLE if whole_epoch else PURE), f"trainer.max_epochs={epochs}",
                                        *framework_overrides], tmp)
        pl.seed_everything(framework_cfg.seed, verbose=False)
        datamodule = builders.build_datamodule(framework_cfg)
        builders.fill_data_fields(framework_cfg, datamodule)
        model = builders.build_model(framework_cfg)
        builders.apply_performance_options(framework_cfg, model)
        interleave = Interleave(hand, clock)
        if bare_lightning:
            trainer = bare_trainer(framework_cfg, interleave)
        else:
            callbacks = [*builders.build_callbacks(framework_cfg, model, datamodule), interleave]
            trainer = builders.build_trainer(framework_cfg, callbacks, builders.build_loggers(framework_cfg))
        trainer.fit(model, datamodule=datamodule)
        steps = hand.steps // epochs
        if trainer.num_training_batches != steps:
            raise RuntimeError(f"Lightning ran {trainer.num_training_batches} steps per epoch, the hand loop {steps}")
    result = summarize([1000 * t / steps for t in interleave.lightning[1:]], [1000 * t / steps for t in interleave.hand_times[1:]])
    result["steps_per_epoch"] = steps
    return result


def run(smoke: bool, repeats: int) -> list[dict]:
    rows = []
    for name, (full, small) in CASES.items():
        overrides = small if smoke else full
        for whole in (False, True) if not smoke or name == "vae_mlp" else (False,):  # smoke: whole epochs once
            kind = "epoch incl. validation" if whole else "pure step"
            result = measure(overrides, repeats + 1, whole)
            rows.append(row("training step", f"{name}: {kind}", "dgm-lab (Lightning fit)", "hand-written loop",
                            "CPU ms/step", result, note=" ".join(overrides)))
            print(_line(rows[-1]), flush=True)
        if name in BARE_CASES:
            result = measure(overrides, repeats + 1, False, bare_lightning=True)
            rows.append(row("training step", f"{name}: pure step, bare Lightning", "the same LightningModule, "
                            "plain pl.Trainer", "hand-written loop", "CPU ms/step", result,
                            note="Lightning's own loop: no dgm-lab callback, logger, checkpoint or progress bar"))
            print(_line(rows[-1]), flush=True)
    return rows


def _line(r: dict) -> str:
    if "ratio" not in r:
        return f"{r['name']}: {r['note']}"
    return f"{r['name']}: {r['ratio']:.3f} ({r['ratio_min']:.3f}-{r['ratio_max']:.3f}) {r['candidate']:.3g} vs {r['baseline']:.3g} {r['unit']}"


