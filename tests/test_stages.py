"""The multi-stage mechanism (dgm_lab.models.stages) is not tied to Boltzmann machines: a VAE
trained in two stages restarts its optimizer (momentum cleared, LR times stage_lr_scale, cosine
over the stage's epochs) and resumes at the stage boundary exactly like a straight run."""

from __future__ import annotations

import functools

import pytest
import pytorch_lightning as pl
import torch

from dgm_lab.data import DigitsDataModule
from dgm_lab.models.networks import MLP
from dgm_lab.models.stages import StagedModule
from dgm_lab.models.vae import VAE, Bernoulli

LR = 0.01


class TwoStageVAE(StagedModule, VAE):
    """Stage 0: epochs 0-1, stage 1: epochs 2 to the end; records when each stage began."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.begun: list[tuple[int, int]] = []

    def stage_starts(self) -> list[int]:
        return [0, 2]

    def begin_stage(self, stage: int) -> None:
        self.begun.append((stage, self.current_epoch))


class OptimizerAtEpochStart(pl.Callback):
    """The optimizer and scheduler as the first batch of every epoch sees them."""

    def __init__(self):
        self.seen: dict[int, dict] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0:
            optimizer = trainer.optimizers[0]
            self.seen[trainer.current_epoch] = {"moments": len(optimizer.state), "lr": optimizer.param_groups[0]["lr"],
                                                "T_max": trainer.lr_scheduler_configs[0].scheduler.T_max}


def make_model() -> TwoStageVAE:
    pl.seed_everything(0, verbose=False)
    return TwoStageVAE(encoder=functools.partial(MLP, hidden=[16]), decoder=functools.partial(MLP, hidden=[16]),
                       likelihood=Bernoulli(), latent_dim=2, stage_lr_scale=[1.0, 0.5],
                       optimizer=functools.partial(torch.optim.Adam, lr=LR),
                       scheduler=functools.partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=4),
                       data_shape=[1, 8, 8], num_classes=10, evaluation={"iwae_k": 2})


def fit(model, folder, max_epochs: int, ckpt_path=None, callbacks=()) -> pl.Trainer:
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=folder, save_last=True, save_top_k=0)
    trainer = pl.Trainer(max_epochs=max_epochs, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=folder,
                         callbacks=[checkpoint, *callbacks])
    trainer.fit(model, datamodule=DigitsDataModule(batch_size=128), ckpt_path=ckpt_path, weights_only=True)
    return trainer


def test_a_two_stage_vae_restarts_its_optimizer_and_resumes_at_the_boundary(tmp_path):
    straight, watch = make_model(), OptimizerAtEpochStart()
    fit(straight, tmp_path / "straight", 4, callbacks=[watch])
    assert straight.begun == [(0, 0), (1, 2)] and int(straight.started_stage) == 1
    seen = watch.seen
    assert seen[0]["moments"] == seen[2]["moments"] == 0  # Adam moments cleared when a stage starts
    assert seen[1]["moments"] > 0 and seen[3]["moments"] > 0
    assert seen[0]["T_max"] == seen[2]["T_max"] == 2  # each stage's cosine spans its 2 epochs
    for epoch, expected in [(0, LR), (1, LR / 2), (2, LR * 0.5), (3, LR * 0.5 / 2)]:
        assert seen[epoch]["lr"] == pytest.approx(expected), epoch

    first_stage = make_model()
    fit(first_stage, tmp_path / "split", 2)
    assert int(first_stage.started_stage) == 0
    resumed = make_model()
    fit(resumed, tmp_path / "split", 4, ckpt_path=tmp_path / "split" / "last.ckpt")
    assert resumed.begun == [(1, 2)]  # stage 0 is not begun a second time
    a = torch.load(tmp_path / "straight" / "last.ckpt", weights_only=True)
    b = torch.load(tmp_path / "split" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] > 0
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    moments_a, moments_b = (next(iter(c["optimizer_states"][0]["state"].values()))["exp_avg_sq"] for c in (a, b))
    assert torch.equal(moments_a, moments_b)
