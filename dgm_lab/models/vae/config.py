"""Settings of the VAE family (``model=vae|conv_vae|beta_vae|iwae``); the networks and the
likelihood are ``_target_`` nodes of the YAML files."""

from __future__ import annotations

from dataclasses import dataclass

from dgm_lab.errors import require
from dgm_lab.models.settings import ModelSchema, ModelSettings, setting


@dataclass
class VAEConfig(ModelSettings):
    latent_dim: int = setting(50, minimum=1)  # size of z
    beta: float = setting(1.0, minimum=0)  # weight of the KL term (1 gives the ELBO; beta-VAE: > 1)
    kl_warmup_steps: int = setting(0, minimum=0)  # KL weight rises linearly from 0 to beta (0: off)
    kl_cycle_steps: int = setting(0, minimum=0)  # cyclical annealing period in steps (0: off)
    free_bits: float = setting(0.0, minimum=0)  # minimum KL per latent dimension, nats


@dataclass
class IWAEConfig(VAEConfig):
    k: int = setting(5, minimum=1)  # importance samples per training example

    def check(self) -> None:
        require(self.beta == 1.0 and self.free_bits == 0 and not self.kl_cycle_steps,
                "model=iwae trains the plain k-sample bound: leave beta=1, free_bits=0 and kl_cycle_steps=0.")


SCHEMAS = {
    "vae": ModelSchema("dgm_lab.models.vae.VAE", VAEConfig, reads_eval=True),
    "iwae": ModelSchema("dgm_lab.models.vae.IWAE", IWAEConfig, reads_eval=True),
    "cvae": ModelSchema("dgm_lab.models.vae.CVAE", VAEConfig, reads_eval=True),
}
