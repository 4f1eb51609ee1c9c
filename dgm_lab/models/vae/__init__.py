"""Variational autoencoders: the VAE (beta, KL warm-up, cyclical annealing, free bits), the IWAE,
the semi-supervised M2 (and M1+M2),
the likelihood-evaluation base they share and the decoder likelihoods p(x | z)
(Bernoulli, Gaussian, discretized logistic and its PixelCNN++ mixture)."""

from dgm_lab.models.vae.iwae import IWAE
from dgm_lab.models.vae.likelihood_module import LikelihoodModule
from dgm_lab.models.vae.likelihoods import Bernoulli, DiscretizedLogistic, Gaussian, Likelihood
from dgm_lab.models.vae.logistic_mixture import DiscretizedLogisticMixture
from dgm_lab.models.vae.m2 import M2
from dgm_lab.models.vae.vae import VAE

__all__ = ["VAE", "IWAE", "M2", "LikelihoodModule", "Bernoulli", "Gaussian", "DiscretizedLogistic", "DiscretizedLogisticMixture",
           "Likelihood"]
