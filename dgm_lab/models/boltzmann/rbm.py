"""Restricted Boltzmann machine (Hinton 2002) trained by CD-k or persistent CD (Tieleman 2008),
with log Z by annealed importance sampling (Salakhutdinov & Murray 2008).

Shapes: v (B, D) visible, h (B, H) hidden, weight (D, H). Energies and log-probabilities in nats.
"""

from __future__ import annotations

import torch

from dgm_lab.errors import require
from dgm_lab.metrics.ais import annealed_importance_sampling, base_rate_bias, unnormalized_log_prob
from dgm_lab.models.boltzmann.config import RBMConfig
from dgm_lab.models.boltzmann.layer import RBMLayer, bernoulli, device_generator
from dgm_lab.models.boltzmann.module import BoltzmannModule

GAUSSIAN_MIN_STD = 0.05  # pixels that never vary (MNIST borders) are not divided by ~0


class RBM(BoltzmannModule):
    """Bernoulli-Bernoulli or Gaussian-Bernoulli RBM on flattened images.

    Settings (``RBMConfig``, dgm_lab/models/boltzmann/config.py, checked there):
        num_hidden: H, number of binary hidden units.
        visible: "bernoulli" (binarized data, or grey levels as probabilities) or "gaussian"
            (each pixel standardized with the training set's mean and std; unit variance).
        cd_k: Gibbs sweeps per update (CD-k), or sweeps the persistent chains advance per update.
        persistent: persistent CD (Tieleman 2008) with ``num_chains`` fantasy particles.
        init_std: initial weight std.

    Metrics (nats): ``val/pseudo_loglik`` (bernoulli; per example, summed over pixels),
    ``val/recon_error`` (squared error summed over pixels, data units), ``val/free_energy_gap``
    (mean F on validation minus mean F on training examples; growth means overfitting),
    ``test/loglik_ais`` (mean log p(x) with log Z by AIS) and its ``_low``/``_high`` interval.
    """

    default_monitor = ("val/pseudo_loglik", "max")

    @property
    def binary_visible(self) -> bool:
        return self.visible == "bernoulli"  # Gaussian units have densities: log p(x) > 0 is possible

    settings_class = RBMConfig

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        settings = self.settings
        self.cd_k, self.persistent, self.visible = settings.cd_k, settings.persistent, settings.visible
        self.rbm = RBMLayer(self.num_visible, settings.num_hidden, settings.visible,
                            settings.num_chains if settings.persistent else 0, init_std=settings.init_std)
        # Gaussian units see standardized pixels; the statistics travel in the checkpoint.
        self.register_buffer("data_mean", torch.zeros(self.num_visible))
        self.register_buffer("data_std", torch.ones(self.num_visible))
        self.register_buffer("data_initialized", torch.tensor(False))
        self.check_stages()

    def first_layer(self) -> RBMLayer:
        return self.rbm

    # -- data <-> visible units ------------------------------------------------------------
    def to_visible(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        return (flat - self.data_mean) / self.data_std if self.visible == "gaussian" else flat

    def to_data(self, v: torch.Tensor) -> torch.Tensor:
        return v * self.data_std + self.data_mean if self.visible == "gaussian" else v

    def log_jacobian(self) -> torch.Tensor:
        """log |dv/dx| of the standardization: log p(x) = log p(v) + this (0 for bernoulli)."""
        return -self.data_std.double().log().sum() if self.visible == "gaussian" else torch.zeros((), dtype=torch.float64)

    def on_fit_start(self) -> None:
        """First fit only: visible biases at the data's base rates (Hinton's guide, section 8)."""
        checkpoint = self.trainer.checkpoint_callback
        require(self.visible == "bernoulli" or checkpoint is None or checkpoint.monitor != "val/pseudo_loglik",
                "model.visible=gaussian has no pseudo-log-likelihood to select checkpoints by; add "
                "monitor.metric=val/recon_error monitor.mode=min.")
        images = self.train_images()
        if bool(self.data_initialized) or images is None:
            return
        with torch.no_grad():
            if self.visible == "gaussian":
                self.data_mean.copy_(images.mean(0))
                self.data_std.copy_(images.std(0).clamp_min(GAUSSIAN_MIN_STD))
            else:
                self.rbm.visible_bias.copy_(base_rate_bias(images).float())
        self.data_initialized.fill_(True)

    # -- training --------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        x, _ = batch
        optimizer = self.optimizers()
        v = self.to_visible(x)
        out = self.rbm.contrastive_divergence(v, self.cd_k, self.persistent)
        optimizer.step()
        self.log_train_step({"train/free_energy_diff": out["loss"]}, prog_bar_key="train/free_energy_diff")
        if out["recon"] is not None:
            self.accumulate_epoch_mean("train/recon_error", (x.flatten(1) - self.to_data(out["recon"])).pow(2).sum(-1).mean())
        return out["loss"]

    # -- monitoring ------------------------------------------------------------------------
    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """E[v | p(h | x)]: one deterministic up-down pass, images (N, C, H, W) in [0, 1]."""
        recon = self.to_data(self.rbm.visible_mean(self.rbm.hidden_probs(self.to_visible(x))))
        return recon.clamp(0, 1).reshape(-1, *self.data_shape)

    @torch.no_grad()
    def on_validation_epoch_end(self) -> None:
        binary = self.visible == "bernoulli"
        val = self.train_images("val", self.monitor_examples, binary)
        train = self.train_images("train", self.monitor_examples, binary)
        if val is None or train is None:
            return
        val_v, train_v = self.to_visible(val), self.to_visible(train)
        gap = self.rbm.free_energy(val_v).mean() - self.rbm.free_energy(train_v).mean()
        self.log("val/free_energy_gap", gap, on_epoch=True)
        if binary:
            self.log("val/pseudo_loglik", self.rbm.pseudo_log_likelihood(val_v).mean(), on_epoch=True)

    def on_fit_end(self) -> None:
        self._monitor_cache = {}

    # -- test: log-likelihood with log Z by AIS --------------------------------------------
    def base_bias(self) -> torch.Tensor:
        """AIS base-rate biases from the training split (standardized units for gaussian)."""
        images = self.train_images()
        if images is None:  # no data at hand: a uniform / standard-normal base model
            return torch.zeros(self.num_visible, dtype=torch.float64)
        return base_rate_bias(self.to_visible(images), self.visible)

    def on_test_epoch_start(self) -> None:
        self.ais = annealed_importance_sampling(self.rbm.ais_params(), self.base_bias(), self.ais_num_betas,
                                                self.ais_num_runs)
        self.log_ais_result(self.ais)

    @torch.no_grad()
    def test_step(self, batch, batch_idx):
        x, _ = batch
        v = self.to_visible(x)
        log_p_star = unnormalized_log_prob(self.rbm.ais_params(), v) + self.log_jacobian().to(v.device)
        self.log_ais_estimate("test/loglik_ais", log_p_star, self.ais)
        self.log("test/recon_error", self.reconstruction_error(x), on_epoch=True, batch_size=len(x), sync_dist=True)

    # -- generation ------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, num_samples: int, generator: torch.Generator | None = None, labels=None) -> torch.Tensor:
        """``sample_gibbs_steps`` Gibbs sweeps from uniform noise; returns E[v | h] of the last sweep
        (no sampling noise in the picture), images (N, C, H, W) in [0, 1]."""
        generator = device_generator(generator, self.device)
        shape = (num_samples, self.num_visible)
        if self.visible == "bernoulli":
            v = bernoulli(torch.full(shape, 0.5, device=self.device), generator)
        else:
            v = torch.randn(shape, generator=generator, device=self.device)
        v = self.rbm.gibbs_sweeps(v, self.sample_gibbs_steps - 1, generator)
        mean = self.rbm.visible_mean(bernoulli(self.rbm.hidden_probs(v), generator))
        return self.to_data(mean).clamp(0, 1).reshape(-1, *self.data_shape)
