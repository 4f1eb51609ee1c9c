"""Settings of the VAE family (``model=vae|conv_vae|beta_vae|iwae|m2``); the networks and the
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


@dataclass
class M2Config(ModelSettings):
    """The semi-supervised VAE M2 (Kingma et al. 2014); with ``m1_ckpt`` the stacked M1+M2."""

    latent_dim: int = setting(50, minimum=1)  # size of z
    # Weight of the classification loss -log q(y|x) on a batch's labelled rows, against the bounds
    # (see dgm_lab/models/vae/m2.py for the exact batch loss and the paper's alpha = 0.1 N).
    alpha: float = setting(0.1, minimum=0)
    m1_ckpt: str | None = None  # a trained VAE's run folder or checkpoint: M2 models its latent codes
    m1_codes: str = setting("sample", choices=("sample", "mean"))  # training codes: z1 ~ q(z1|x) or its mean
    # Which of M1's latent units M2 models: "active" ones only (posterior mean varies with x, as the
    # authors' code kept them; an inactive unit's sampled code is pure N(0, 1) noise), or "all".
    m1_units: str = setting("active", choices=("active", "all"))


SCHEMAS = {
    "vae": ModelSchema("dgm_lab.models.vae.VAE", VAEConfig, reads_eval=True),
    "iwae": ModelSchema("dgm_lab.models.vae.IWAE", IWAEConfig, reads_eval=True),
    "cvae": ModelSchema("dgm_lab.models.vae.CVAE", VAEConfig, reads_eval=True),
    "m2": ModelSchema("dgm_lab.models.vae.M2", M2Config, reads_eval=True),
}
