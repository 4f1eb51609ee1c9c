"""fp16 AMP with two optimizers: losses scaled by ``manual_backward``, the scaler updated once per
optimizer step and never between a backward pass and the step that consumes its gradients.

Lightning refuses ``precision=16-mixed`` on a CPU by name, so the test hands it the plugin with a
CPU GradScaler directly; float16 autocast runs on CPUs in torch >= 2.1.
"""

from __future__ import annotations

import functools

import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.precision import MixedPrecision

from dgm_lab.data.toy2d import Ring8DataModule
from dgm_lab.models.gan import GAN, MLPDiscriminator, MLPGenerator


class RecordingScaler(torch.amp.GradScaler):
    """GradScaler that records the order of scale / step / update calls."""

    def __init__(self):
        super().__init__("cpu", init_scale=2.0**10)
        self.events: list[str] = []

    def scale(self, outputs):
        self.events.append("scale")
        return super().scale(outputs)

    def step(self, optimizer, *args, **kwargs):
        self.events.append("step")
        return super().step(optimizer, *args, **kwargs)

    def update(self, new_scale=None):
        self.events.append("update")
        return super().update(new_scale)


def test_fp16_scaler_updates_once_per_optimizer_step(tmp_path):
    torch.manual_seed(0)
    gan = GAN(generator=functools.partial(MLPGenerator, hidden=[16]),
              discriminator=functools.partial(MLPDiscriminator, hidden=[16]),
              optimizer=functools.partial(torch.optim.Adam, lr=1e-3), data_shape=[2], num_classes=8,
              latent_dim=2, loss="wasserstein", gp_weight=10.0, n_critic=2, accumulate=2)
    scaler = RecordingScaler()
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=1, limit_train_batches=3, limit_val_batches=0,
                         plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=tmp_path)
    data = Ring8DataModule(batch_size=8, num_train=512, num_val=8, num_test=8)
    trainer.fit(gan, datamodule=data)
    assert gan.generator_steps == 3
    events = scaler.events
    assert events.count("step") == events.count("update") == 3 * (gan.n_critic + 1)
    pending = False  # a scaled backward pass whose gradients no step has consumed yet
    for previous, event in zip(["start", *events], events, strict=False):
        if event == "scale":
            pending = True
        elif event == "step":
            pending = False
        else:  # every update directly follows a step and never strands scaled gradients
            assert previous == "step" and not pending
    # per D step: 2 micro-batches x (penalty scale + loss scale); per G step: 2 loss scales
    assert events.count("scale") == 3 * (gan.n_critic * 2 * 2 + 2)
    assert all(torch.isfinite(p).all() for p in gan.parameters())
