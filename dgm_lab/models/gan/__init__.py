"""Generative adversarial networks: the adversarial module every GAN preset shares
(``model=gan|dcgan|wgan_gp|sngan|sngan_resnet|wgan_gp_resnet``), its losses and its generator /
discriminator networks (MLP, DCGAN, ResNet); and the semi-supervised GAN (``model=ssgan``)."""

from dgm_lab.models.gan.gan import GAN
from dgm_lab.models.gan.networks import (
    DCGANDiscriminator,
    DCGANGenerator,
    LabelInput,
    MLPDiscriminator,
    MLPGenerator,
    ProjectionHead,
)
from dgm_lab.models.gan.resnet import ResNetDiscriminator, ResNetGenerator
from dgm_lab.models.gan.ssgan import BatchNormMLPGenerator, NoisyMLPDiscriminator, SemiSupervisedGAN

__all__ = ["GAN", "MLPGenerator", "MLPDiscriminator", "DCGANGenerator", "DCGANDiscriminator", "LabelInput",
           "ProjectionHead", "ResNetGenerator", "ResNetDiscriminator", "SemiSupervisedGAN", "BatchNormMLPGenerator",
           "NoisyMLPDiscriminator"]
