"""Settings of the GAN family (``model=gan|dcgan|wgan_gp|sngan|ssgan``); the generator and the
discriminator are ``_target_`` nodes of the YAML files (``conf/model/gan_networks``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from dgm_lab.errors import require
from dgm_lab.models.settings import ModelSchema, ModelSettings, setting


@dataclass
class EMAConfig(ModelSettings):
    """Exponential moving average of the generator's weights; samples and metrics use it unless
    ``use_for_sampling`` is false (``dgm-sample generator=raw`` chooses per draw).

    With ``warmup`` the decay at generator iteration t is min(decay, (1 + t) / (10 + t)), the usual
    warm-up (TensorFlow's ExponentialMovingAverage with num_updates): the average forgets its
    random initialisation within the first few hundred iterations instead of the 1 / (1 - decay)
    = 1,000 a constant 0.999 needs, so short runs sample a trained generator, not noise.

    A generator with batch norm normalizes with running statistics when it samples. The trained
    generator's statistics describe its own activations, not the averaged weights': the EMA
    generator estimates its own from a few fixed noise batches whenever its weights have moved
    since (at sampling and checkpoint time; ``GAN.refresh_ema_statistics``)."""

    key_prefix = "model.ema."
    enabled: bool = True
    decay: float = 0.999
    start_step: int = setting(0, minimum=0)  # copy the weights (no averaging) up to this generator iteration
    warmup: bool = True  # decay min(decay, (1 + t) / (10 + t)) at generator iteration t
    use_for_sampling: bool = True  # samples, grids and metrics from the EMA generator (false: the raw one)

    def check(self) -> None:
        require(0.0 <= self.decay < 1.0, f"model.ema.decay must be in [0, 1), got {self.decay}.")


@dataclass
class GANConfig(ModelSettings):
    latent_dim: int = setting(64, minimum=1)  # size of z ~ N(0, I)
    loss: str = "non_saturating"  # non_saturating | minimax | wasserstein | hinge | least_squares
    n_critic: int = setting(1, minimum=1)  # discriminator steps per generator step
    gp_weight: float = setting(0.0, minimum=0)  # WGAN-GP gradient penalty weight (0: off)
    spectral_norm: bool = False  # spectral normalization on every discriminator layer
    conditional: bool = False  # class-conditional G (label embedding) and projection D
    accumulate: int = setting(1, minimum=1)  # micro-batches of data.batch_size per optimizer step
    max_generator_steps: int | None = setting(None, minimum=1)  # stop after this many generator iterations
    ema: EMAConfig = field(default_factory=EMAConfig)  # a mapping of EMAConfig settings in the YAML
    # Per-network optimizer settings ({lr, betas}) over the shared ``optimizer`` factory (TTUR);
    # null values keep the factory's.
    generator_optimizer: dict | None = setting({"lr": None, "betas": None})
    discriminator_optimizer: dict | None = setting({"lr": None, "betas": None})

    def check(self) -> None:
        # imported here: losses need torch, and this module loads without it (dgm-train --help)
        from dgm_lab.models.gan.losses import adversarial_loss

        require(not adversarial_loss(self.loss).needs_lipschitz or self.gp_weight > 0 or self.spectral_norm,
                f"model.loss={self.loss} needs a Lipschitz critic: set model.gp_weight (10 in WGAN-GP) or "
                "model.spectral_norm=true.")


@dataclass
class SSGANConfig(ModelSettings):
    """The semi-supervised GAN with feature matching (Salimans et al. 2016), ``model=ssgan``."""

    latent_dim: int = setting(100, minimum=1)  # size of z ~ U(0, 1)
    unsupervised_weight: float = setting(1.0, minimum=0)  # weight of the real-vs-generated loss (paper: 1)


SCHEMAS = {"gan": ModelSchema("dgm_lab.models.gan.GAN", GANConfig, reads_eval=False),
           "ssgan": ModelSchema("dgm_lab.models.gan.SemiSupervisedGAN", SSGANConfig, reads_eval=False)}
