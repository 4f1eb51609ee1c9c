"""Importance weighted autoencoder (Burda, Grosse & Salakhutdinov 2015).

Same networks as the VAE; the training objective is the k-sample importance weighted bound
log (1/k) sum_i p(x, z_i) / q(z_i | x), which tightens as k grows (k = 1 is the ELBO).
"""

from __future__ import annotations

import math

import torch

from dgm_lab.models.vae.config import IWAEConfig
from dgm_lab.models.vae.vae import VAE


class IWAE(VAE):
    """VAE trained on the k-sample IWAE bound. ``k`` (``IWAEConfig``): importance samples per
    training example."""

    settings_class = IWAEConfig

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.k = self.settings.k

    def training_loss(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        log_w = self.log_importance_weights(x, self.k, labels)
        bound = torch.logsumexp(log_w, dim=0) - math.log(self.k)
        return {"loss": -bound.mean(), "elbo": log_w.mean(0).mean()}

    def _evaluate(self, batch, split: str) -> None:
        super()._evaluate(batch, split)
        x, _ = batch
        log_w = self.log_importance_weights(x, self.k)
        bound = (torch.logsumexp(log_w, dim=0) - math.log(self.k)).mean()
        self.log(f"{split}/iwae_bound", bound, on_step=False, on_epoch=True, batch_size=x.shape[0], sync_dist=True)
