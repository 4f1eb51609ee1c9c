"""Time to quality: CPU seconds of training until the MNIST VAE's test ELBO reaches a fixed value
(-100 nats), dgm-lab (the LightningModule and Trainer ``dgm-train`` builds) versus the hand-written
loop of ``step.py``: same networks, data, batch, optimizer, binarization and seed.

The two sides race in one process, epoch by epoch, so both see the same machine load: at the start
of every Lightning epoch the hand-written loop trains one epoch. After each epoch a side's model is
scored on the 10,000 test images by the same function, with the same noise and outside both
clocks (scoring costs neither side). A side stops once its ELBO reached the threshold; a
repetition's figure is the ratio of the two sides' training CPU seconds up to the epoch that got
there. Repetitions differ in their seed. A side that does not get there within ``MAX_EPOCHS``
leaves the repetition unmeasured, and the row says so.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytorch_lightning as pl
import torch

from benchmarks import step
from benchmarks.timing import clock, row, summarize
from dgm_lab import builders

THRESHOLD = -100.0  # nats: test ELBO of the 784-200-200-50 VAE on dynamically binarized MNIST
MAX_EPOCHS = 60
FULL = ["model=vae", "data=mnist"]
SMOKE = ["model=vae", "data=digits", "data.batch_size=64"]
SMOKE_THRESHOLD = -60.0  # nats on 8x8 digits: reached within the first epochs


def test_elbo(model: torch.nn.Module, images: torch.Tensor) -> float:
    """Mean single-sample ELBO of ``images``; a fixed seed, so both sides are scored with the
    same noise, and the training RNG streams are left as they were."""
    was_training = model.training
    model.eval()
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(0)
        elbo = float(model.elbo_terms(images)["elbo"].mean())
    model.train(was_training)
    return elbo


class Race(pl.Callback):
    """One hand-written epoch at the start of each Lightning epoch; each side's training CPU time
    and test ELBO after every epoch, until both reached ``threshold``."""

    def __init__(self, hand: step.HandLoop, images: torch.Tensor, threshold: float):
        self.hand, self.images, self.threshold = hand, images, threshold
        self.hand_s = self.lightning_s = 0.0
        self.curves: dict[str, list[tuple[int, float, float]]] = {"hand": [], "dgm-lab": []}  # (epoch, CPU s, ELBO)
        self.reached: dict[str, tuple[int, float] | None] = {"hand": None, "dgm-lab": None}
        self._start: float | None = None
        self._scoring = 0.0

    def hand_epoch(self) -> None:
        start = clock()
        self.hand.epoch()
        self.hand_s += clock() - start
        self._record("hand", self.hand_s, test_elbo(self.hand.model, self.images))

    def _record(self, side: str, seconds: float, elbo: float) -> None:
        epoch = len(self.curves[side]) + 1
        self.curves[side].append((epoch, seconds, elbo))
        if self.reached[side] is None and elbo >= self.threshold:
            self.reached[side] = (epoch, seconds)

    def _stop_clock(self) -> None:
        if self._start is not None:
            self.lightning_s += clock() - self._start - self._scoring
            self._start = None

    def on_train_epoch_start(self, trainer, pl_module):
        self._stop_clock()
        if self.reached["hand"] is None:
            self.hand_epoch()
        self._start, self._scoring = clock(), 0.0

    def on_train_epoch_end(self, trainer, pl_module):
        entered = clock()
        seconds_so_far = self.lightning_s + entered - self._start - self._scoring
        self._record("dgm-lab", seconds_so_far, test_elbo(pl_module, self.images))
        if self.reached["dgm-lab"] is not None:
            trainer.should_stop = True
        self._scoring += clock() - entered

    def on_train_end(self, trainer, pl_module):
        self._stop_clock()


def race(overrides: list[str], seed: int, threshold: float, max_epochs: int) -> Race:
    """One race; the hand-written side trains on after Lightning stopped if it has not arrived yet."""
    with tempfile.TemporaryDirectory() as tmp, step.quiet():
        common = [*overrides, *step.PURE, f"seed={seed}", f"trainer.max_epochs={max_epochs}"]
        cfg = step.compose_config(common, tmp)
        hand = step.HandLoop(cfg.copy(), validate=False, folder=Path(tmp))  # it fills data fields of its copy
        pl.seed_everything(cfg.seed, verbose=False)
        datamodule = builders.build_datamodule(cfg)
        builders.fill_data_fields(cfg, datamodule)
        datamodule.setup()
        model = builders.build_model(cfg)
        contest = Race(hand, datamodule.splits["test"].images, threshold)
        callbacks = [*builders.build_callbacks(cfg, model, datamodule), contest]
        trainer = builders.build_trainer(cfg, callbacks, builders.build_loggers(cfg))
        trainer.fit(model, datamodule=datamodule)
        while contest.reached["hand"] is None and len(contest.curves["hand"]) < max_epochs:
            contest.hand_epoch()
    return contest


def run(smoke: bool, repeats: int) -> list[dict]:
    overrides, threshold = (SMOKE, SMOKE_THRESHOLD) if smoke else (FULL, THRESHOLD)
    max_epochs = 3 if smoke else MAX_EPOCHS
    framework, hand, epochs, missed = [], [], [], 0
    for seed in range(repeats):
        contest = race(overrides, seed, threshold, max_epochs)
        if None in contest.reached.values():
            missed += 1
            continue
        (l_epochs, l_s), (h_epochs, h_s) = contest.reached["dgm-lab"], contest.reached["hand"]
        framework.append(l_s)
        hand.append(h_s)
        epochs.append(f"{l_epochs}/{h_epochs}")
        print(f"time to quality seed {seed}: dgm-lab {l_s:.1f} s ({l_epochs} epochs), hand {h_s:.1f} s ({h_epochs} epochs)",
              flush=True)
    name = f"MLP VAE to test ELBO >= {threshold:g} nats ({'digits' if smoke else 'MNIST'}, dynamic binarization)"
    note = (f"epochs to get there, dgm-lab/hand per seed: {', '.join(epochs)}" +
            (f"; {missed} of {repeats} seeds did not get there within {max_epochs} epochs" if missed else ""))
    if not framework:
        return [row("time to quality", name, "dgm-lab (Lightning fit)", "hand-written loop", "CPU s", None,
                    note=f"not reached within {max_epochs} epochs by both sides in any of {repeats} seeds")]
    return [row("time to quality", name, "dgm-lab (Lightning fit)", "hand-written loop", "CPU s",
                summarize(framework, hand), note=note)]
