"""The semi-supervised GAN with feature matching (Salimans et al. 2016, "Improved Techniques for
Training GANs", section 5), ``model=ssgan``, with its MNIST networks.

The discriminator is a (K+1)-class classifier: K logits l_1..l_K for the real classes and the
(K+1)-th ("generated") logit fixed at 0, so p(real | x) = Z / (Z + 1) with Z = sum_k exp(l_k).
Losses (nats, batch means):

* supervised, labelled rows: cross-entropy of softmax(l_1..l_K) with the label;
* unsupervised, unlabelled rows and as many generated ones: -log p(real | x) - log(1 - p(real | G(z))),
  averaged over the two halves, i.e. (softplus(lse) - lse) / 2 on real and softplus(lse) / 2 on
  generated examples, lse = logsumexp(l);
* generator, feature matching: || mean f(x) - mean f(G(z)) ||^2 / F over the F units of the
  discriminator's last hidden layer f, on the unlabelled rows.

Labels come in the batch (``dgm_lab.data.contract``: rows with ``y == UNLABELED`` are unlabelled);
with every label known, all rows feed both losses. Validation and test report ``{split}/error``,
the classification error of argmax_k l_k. Images are in [0, 1] (the generator ends in a sigmoid).

Networks (the paper's MNIST model, OpenAI's improved-gan ``train_mnist_feature_matching``): D adds
Gaussian noise (std 0.3) to the input and (std 0.5) after every hidden layer of 1000-500-250-250-250
ReLU units, weight-normalized dense layers; G maps z ~ U(0, 1)^100 through 500-500 softplus units with
batch norm to 784 sigmoid outputs (weight-normalized). Weight norm here starts from PyTorch's default
initialisation, not the paper's data-dependent one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from dgm_lab.data.contract import labeled_mask
from dgm_lab.errors import require
from dgm_lab.models.base import GenerativeModule
from dgm_lab.models.gan.config import SSGANConfig
from dgm_lab.models.shapes import as_shape


class GaussianNoise(nn.Module):
    """Adds N(0, std^2) noise in training mode; the identity in evaluation mode."""

    def __init__(self, std: float):
        super().__init__()
        self.std = float(std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.std * torch.randn_like(x) if self.training and self.std > 0 else x


class NoisyMLPDiscriminator(nn.Module):
    """(B, *in_shape) -> (K logits, last hidden features): weight-normalized ReLU layers with
    Gaussian noise on the input and after every hidden layer."""

    def __init__(self, in_shape, num_classes: int, hidden: list[int] = (1000, 500, 250, 250, 250),
                 input_noise: float = 0.3, hidden_noise: float = 0.5):
        super().__init__()
        width = math.prod(as_shape(in_shape))
        self.input_noise = GaussianNoise(input_noise)
        self.hidden = nn.ModuleList()
        for h in hidden:
            self.hidden.append(weight_norm(nn.Linear(width, h)))
            width = h
        self.hidden_noise = GaussianNoise(hidden_noise)
        self.out = weight_norm(nn.Linear(width, num_classes))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.input_noise(x.flatten(1))
        features = h
        for layer in self.hidden:
            features = F.relu(layer(h))
            h = self.hidden_noise(features)
        return self.out(h), features


class BatchNormMLPGenerator(nn.Module):
    """z (B, latent_dim) -> images (B, *out_shape) in [0, 1]: softplus layers with batch norm, then a
    weight-normalized sigmoid layer."""

    def __init__(self, latent_dim: int, out_shape, hidden: list[int] = (500, 500)):
        super().__init__()
        self.out_shape = as_shape(out_shape)
        layers: list[nn.Module] = []
        width = latent_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.BatchNorm1d(h), nn.Softplus()]
            width = h
        layers += [weight_norm(nn.Linear(width, math.prod(self.out_shape))), nn.Sigmoid()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *self.out_shape)


class SemiSupervisedGAN(GenerativeModule):
    """(K+1)-class semi-supervised GAN, generator trained by feature matching (manual optimization).

    Args:
        generator: factory ``(latent_dim, out_shape) -> nn.Module``, images in [0, 1].
        discriminator: factory ``(in_shape, num_classes) -> nn.Module`` returning (logits, features).

    Settings (``SSGANConfig``, dgm_lab/models/gan/config.py): ``latent_dim``, ``unsupervised_weight``.
    """

    settings_class = SSGANConfig
    default_monitor = ("val/error", "min")

    def __init__(self, generator: Callable, discriminator: Callable, **kwargs):
        settings = self.settings_class.take(kwargs)
        super().__init__(**kwargs)
        self.settings = settings
        self.automatic_optimization = False
        self.save_hyperparameters(dataclasses.asdict(settings), logger=False)
        require(self.num_classes >= 2, f"model=ssgan needs labelled data with 2 or more classes, this data has "
                                       f"{self.num_classes}.")
        require(len(self.data_shape) == 3, f"model=ssgan generates images (its generator ends in a sigmoid), "
                                           f"this data has shape {list(self.data_shape)}; use image data.")
        self.latent_dim, self.unsupervised_weight = settings.latent_dim, settings.unsupervised_weight
        self.generator = generator(latent_dim=self.latent_dim, out_shape=self.data_shape)
        self.discriminator = discriminator(in_shape=self.data_shape, num_classes=self.num_classes)
        self.generator_steps = 0  # training iterations: Lightning's global_step counts both optimizers' steps

    @property
    def training_iterations(self) -> int:
        return self.generator_steps

    def optimized_parameters(self) -> dict:
        return {"generator_optimizer": self.generator.parameters(),
                "discriminator_optimizer": self.discriminator.parameters()}

    def noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """z ~ U(0, 1)^latent_dim, as in the paper's MNIST model."""
        return torch.rand(n, self.latent_dim, generator=generator).to(self.device)

    # -- losses -------------------------------------------------------------------------------
    def discriminator_loss(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        known = labeled_mask(labels)
        real = x[~known] if (~known).any() else x
        supervised = x.new_zeros((), dtype=torch.float32)
        if known.any():
            supervised = F.cross_entropy(self.discriminator(x[known])[0].float(), labels[known])
        with torch.no_grad():
            fake = self.generator(self.noise(real.shape[0]))
        lse_real = torch.logsumexp(self.discriminator(real)[0].float(), dim=1)
        lse_fake = torch.logsumexp(self.discriminator(fake)[0].float(), dim=1)
        unsupervised = 0.5 * ((F.softplus(lse_real) - lse_real).mean() + F.softplus(lse_fake).mean())
        loss = supervised + self.unsupervised_weight * unsupervised
        if self._trainer is not None and self.trainer.world_size > 1:  # DDP: mark G's parameters used
            loss = loss + 0.0 * sum(p.sum() for p in self.generator.parameters())
        return {"loss": loss, "supervised": supervised.detach(), "unsupervised": unsupervised.detach(), "real": real}

    def feature_matching_loss(self, real: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            real_features = self.discriminator(real)[1].float().mean(0)
        fake_features = self.discriminator(self.generator(self.noise(real.shape[0])))[1].float().mean(0)
        return (real_features - fake_features).pow(2).mean()

    # -- training -----------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        x, y = batch
        g_opt, d_opt = self.optimizers()
        d_opt.zero_grad(set_to_none=True)
        d_out = self.discriminator_loss(x, y)
        self.manual_backward(d_out["loss"])
        d_opt.step()

        g_opt.zero_grad(set_to_none=True)
        g_loss = self.feature_matching_loss(d_out["real"])
        self.manual_backward(g_loss)  # also reaches D: those gradients are discarded
        g_opt.step()
        d_opt.zero_grad(set_to_none=True)
        self.generator_steps += 1

        metrics = {"train/d_loss": d_out["loss"].detach(), "train/g_loss": g_loss.detach(),
                   "train/supervised_loss": d_out["supervised"], "train/unsupervised_loss": d_out["unsupervised"]}
        self.log_train_step(metrics, prog_bar_key="train/d_loss")
        return {"loss": metrics["train/d_loss"] + metrics["train/g_loss"]}  # DivergenceGuard reads it

    # -- evaluation ---------------------------------------------------------------------------
    def _evaluate(self, batch, split: str) -> None:
        x, y = batch
        known = labeled_mask(y)
        if not known.any():
            return
        logits = self.discriminator(x[known])[0]
        wrong = (logits.argmax(1) != y[known]).float().mean()
        self.log(f"{split}/error", wrong, on_step=False, on_epoch=True, batch_size=int(known.sum()), sync_dist=True)

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val")

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, "test")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["ssgan"] = {"generator_steps": self.generator_steps}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self.generator_steps = int(checkpoint.get("ssgan", {}).get("generator_steps", 0))

    # -- sampling -----------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, num_samples: int, generator: torch.Generator | None = None, labels=None) -> torch.Tensor:
        """Images (N, C, H, W) in [0, 1] from z ~ U(0, 1) drawn with ``generator``."""
        was_training = self.generator.training
        self.generator.eval()  # batch norm uses its running statistics; sampling never updates them
        try:
            return self.generator(self.noise(num_samples, generator)).float()
        finally:
            self.generator.train(was_training)
