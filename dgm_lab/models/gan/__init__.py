"""Generative adversarial networks: the adversarial module every GAN preset shares
(``model=gan|dcgan|wgan_gp|sngan``), its losses and its generator / discriminator networks."""

from dgm_lab.models.gan.gan import GAN
from dgm_lab.models.gan.networks import (
    DCGANDiscriminator,
    DCGANGenerator,
    LabelInput,
    MLPDiscriminator,
    MLPGenerator,
    ProjectionHead,
)

__all__ = ["GAN", "MLPGenerator", "MLPDiscriminator", "DCGANGenerator", "DCGANDiscriminator", "LabelInput",
           "ProjectionHead"]
