"""Conditional VAE (Sohn, Lee & Yan 2015): encoder q(z | x, y), decoder p(x | z, y), prior N(0, I).

The label enters both networks as a one-hot vector concatenated to their input: the encoder sees
the flattened image and one-hot y (``(D + K,)``, so its network is an MLP), the decoder z and
one-hot y (``(latent_dim + K,)``). Every training image needs its label: ``data.num_labeled``
(hidden labels) is refused in one sentence. Bounds and test NLLs are of log p(x | y).
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from dgm_lab.data.contract import hides_labels
from dgm_lab.errors import require
from dgm_lab.models.vae.vae import VAE


class CVAE(VAE):
    """The VAE with both networks conditioned on the class; ``sample(n, labels=...)`` draws class
    ``labels[i]`` for sample i (default: i mod K)."""

    conditional = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        require(self.num_classes >= 2,
                f"model=cvae needs labelled data with 2 or more classes, this data has {self.num_classes}.")

    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        require(not hides_labels(datamodule),
                f"model=cvae needs the label of every training image, but data.num_labeled="
                f"{getattr(datamodule, 'num_labeled', None)} hides most of them; remove data.num_labeled, or use a "
                "semi-supervised model.")

    # -- conditioning --------------------------------------------------------------------------
    def encoder_input_shape(self) -> tuple[int, ...]:
        return (math.prod(self.data_shape) + self.num_classes,)

    def decoder_input_shape(self) -> tuple[int, ...]:
        return (self.latent_dim + self.num_classes,)

    def one_hot(self, labels: torch.Tensor | None, count: int) -> torch.Tensor:
        require(labels is not None and len(labels) == count,
                "model=cvae encodes and decodes given the class: pass one label per image.")
        require(bool(((labels >= 0) & (labels < self.num_classes)).all()),
                f"labels must be classes 0..{self.num_classes - 1}, got {labels.unique().tolist()}.")
        return F.one_hot(labels.long(), self.num_classes).to(self.device, torch.float32)

    def encode(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return super().encode(torch.cat([x.flatten(1), self.one_hot(labels, len(x))], dim=1))

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(torch.cat([z, self.one_hot(labels, len(z))], dim=1))

    # -- generation ----------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, num_samples: int, generator: torch.Generator | None = None, labels=None) -> torch.Tensor:
        labels = torch.arange(num_samples) % self.num_classes if labels is None else torch.as_tensor(labels)
        z = torch.randn(num_samples, self.latent_dim, generator=generator).to(self.device)
        return self.likelihood.mean(self.decode(z, labels.to(self.device)))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        mean, _ = self.encode(x, labels)
        return self.likelihood.mean(self.decode(mean, labels))

    @torch.no_grad()
    def interpolate(self, x_start: torch.Tensor, x_end: torch.Tensor, steps: int = 10,
                    labels: torch.Tensor | None = None) -> torch.Tensor:
        """Between the posterior means of pairs of one class ``labels[i]``, decoded in that class."""
        z0, _ = self.encode(x_start, labels)
        z1, _ = self.encode(x_end, labels)
        t = torch.linspace(0, 1, steps, device=z0.device).view(1, steps, 1)
        z = (1 - t) * z0.unsqueeze(1) + t * z1.unsqueeze(1)
        return self.likelihood.mean(self.decode(z.reshape(-1, self.latent_dim), labels.repeat_interleave(steps)))
