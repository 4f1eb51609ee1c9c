"""Generative adversarial networks: the adversarial module every GAN preset shares
(``model=gan|dcgan|wgan_gp|sngan|sngan_resnet|wgan_gp_resnet``), its losses and its generator /
discriminator networks (MLP, DCGAN, ResNet); and the semi-supervised GAN (``model=ssgan``).

The classes are imported on first use (``dgm_lab.lazy``): ``config.py`` loads without torch."""

from dgm_lab.lazy import lazy_exports

_EXPORTS = {"GAN": "gan", "MLPGenerator": "networks", "MLPDiscriminator": "networks", "DCGANGenerator": "networks",
            "DCGANDiscriminator": "networks", "LabelInput": "networks", "ProjectionHead": "networks",
            "ResNetGenerator": "resnet", "ResNetDiscriminator": "resnet",
            "SemiSupervisedGAN": "ssgan", "BatchNormMLPGenerator": "ssgan", "NoisyMLPDiscriminator": "ssgan"}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
