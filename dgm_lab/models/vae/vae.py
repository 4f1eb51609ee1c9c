"""Variational autoencoder (Kingma & Welling 2014) with beta (Higgins et al. 2017), KL warm-up,
cyclical KL annealing (Fu et al. 2019) and free bits (Kingma et al. 2016).

Loss convention: the reconstruction log-likelihood is summed over data dimensions and averaged
over the batch; ``beta`` multiplies the KL with no hidden dataset-size factor.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import nn

from dgm_lab.metrics.likelihood import (
    gaussian_log_density,
    kl_to_standard_normal,
    standard_normal_log_density,
)
from dgm_lab.models.vae.config import VAEConfig
from dgm_lab.models.vae.likelihood_module import LikelihoodModule

LOG_VAR_RANGE = (-12.0, 8.0)  # clamp keeps exp(log_var) finite under AMP and early training


class VAE(LikelihoodModule):
    """Gaussian-latent VAE.

    Args:
        encoder: factory ``(in_shape, out_shape) -> nn.Module`` mapping x to 2 * latent_dim values.
        decoder: factory ``(in_shape, out_shape) -> nn.Module`` mapping z to likelihood parameters.
        likelihood: a module from ``dgm_lab.models.vae.likelihoods`` (Bernoulli, Gaussian, ...).

    Settings (``VAEConfig``, dgm_lab/models/vae/config.py, checked there):
        latent_dim: size of z.
        beta: weight of the KL term (1 gives the ELBO).
        kl_warmup_steps: KL weight rises linearly from 0 to beta over this many steps (0: off).
        kl_cycle_steps: cyclical annealing period in steps; the weight rises over the first half
            of each cycle, then stays at beta (0: off).
        free_bits: minimum KL in nats per latent dimension (batch-averaged) in the training loss.
    """

    settings_class: type[VAEConfig] = VAEConfig

    def __init__(self, encoder: Callable, decoder: Callable, likelihood: nn.Module, **kwargs):
        settings = self.settings_class.take(kwargs)
        super().__init__(**kwargs)
        self.settings = settings
        self.save_hyperparameters(dataclasses.asdict(settings), logger=False)
        latent_dim = settings.latent_dim
        self.latent_dim, self.beta = latent_dim, settings.beta
        self.kl_warmup_steps, self.kl_cycle_steps = settings.kl_warmup_steps, settings.kl_cycle_steps
        self.free_bits = settings.free_bits
        self.likelihood = likelihood
        c, *rest = self.data_shape
        self.encoder = encoder(self.encoder_input_shape(), (2 * latent_dim,))
        self.decoder = decoder(self.decoder_input_shape(), (likelihood.decoder_channels(c), *rest))

    # -- model -------------------------------------------------------------------------------
    # ``labels`` (B,) is what a class-conditional subclass (CVAE) conditions on; the VAE ignores it.
    def encoder_input_shape(self) -> tuple[int, ...]:
        return tuple(self.data_shape)

    def decoder_input_shape(self) -> tuple[int, ...]:
        return (self.latent_dim,)

    def encode(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_var = self.encoder(x).float().chunk(2, dim=-1)
        return mean, log_var.clamp(*LOG_VAR_RANGE)

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(z)

    def kl_weight(self) -> float:
        """beta times the warm-up / cyclical factor at the current step."""
        step = self.global_step
        factor = 1.0
        if self.kl_cycle_steps:
            factor = min(1.0, (step % self.kl_cycle_steps) / (0.5 * self.kl_cycle_steps))
        elif self.kl_warmup_steps:
            factor = min(1.0, step / self.kl_warmup_steps)
        return self.beta * factor

    def elbo_terms(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        mean, log_var = self.encode(x, labels)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * log_var)
        recon = self.likelihood.log_prob(self.decode(z, labels), x)
        kl_per_dim = kl_to_standard_normal(mean, log_var)
        kl = kl_per_dim.sum(-1)
        return {"elbo": recon - kl, "recon": recon, "kl": kl, "kl_per_dim": kl_per_dim, "posterior_mean": mean}

    def log_importance_weights(self, x: torch.Tensor, num_samples: int,
                               labels: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x, z_i) - log q(z_i | x) for ``num_samples`` draws z_i ~ q(z | x); shape (n, B)."""
        mean, log_var = self.encode(x, labels)
        z = mean + torch.randn(num_samples, *mean.shape, device=mean.device) * torch.exp(0.5 * log_var)
        log_q = gaussian_log_density(z, mean, log_var)
        log_prior = standard_normal_log_density(z)
        repeated = None if labels is None else labels.repeat(num_samples)  # z is (n, B): sample-major
        params = self.decode(z.reshape(-1, self.latent_dim), repeated)
        log_lik = self.likelihood.log_prob_repeated(params, x, num_samples).view(num_samples, -1)
        return log_lik + log_prior - log_q

    # -- training ---------------------------------------------------------------------------
    def training_loss(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        terms = self.elbo_terms(x, labels)
        kl_per_dim = terms["kl_per_dim"].mean(0)
        if self.free_bits > 0:
            kl_per_dim = kl_per_dim.clamp(min=self.free_bits)
        loss = -terms["recon"].mean() + self.kl_weight() * kl_per_dim.sum()
        return {"loss": loss, "elbo": terms["elbo"].mean()}

    def training_step(self, batch, batch_idx):
        x, y = batch
        out = self.training_loss(x, y)
        self.log_train_step({"train/loss": out["loss"]}, prog_bar_key="train/loss")
        self.accumulate_epoch_mean("train/elbo", out["elbo"])
        return out["loss"]

    # -- generation --------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, num_samples: int, generator: torch.Generator | None = None, labels=None) -> torch.Tensor:
        z = torch.randn(num_samples, self.latent_dim, generator=generator).to(self.device)
        return self.likelihood.mean(self.decode(z))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        mean, _ = self.encode(x)
        return self.likelihood.mean(self.decode(mean))

    @torch.no_grad()
    def interpolate(self, x_start: torch.Tensor, x_end: torch.Tensor, steps: int = 10) -> torch.Tensor:
        """Decode evenly spaced points between the posterior means of pairs; (pairs * steps, C, H, W)."""
        z0, _ = self.encode(x_start)
        z1, _ = self.encode(x_end)
        t = torch.linspace(0, 1, steps, device=z0.device).view(1, steps, 1)
        z = (1 - t) * z0.unsqueeze(1) + t * z1.unsqueeze(1)
        return self.likelihood.mean(self.decode(z.reshape(-1, self.latent_dim)))
