"""Variational autoencoders: the VAE (beta, KL warm-up, cyclical annealing, free bits), the IWAE,
the likelihood-evaluation base they share and the decoder likelihoods p(x | z)
(Bernoulli, Gaussian, discretized logistic and its PixelCNN++ mixture)."""

from dgm_lab.models.vae.cvae import CVAE
from dgm_lab.models.vae.iwae import IWAE
from dgm_lab.models.vae.likelihood_module import LikelihoodModule
from dgm_lab.models.vae.likelihoods import Bernoulli, DiscretizedLogistic, Gaussian, Likelihood
from dgm_lab.models.vae.logistic_mixture import DiscretizedLogisticMixture
from dgm_lab.models.vae.vae import VAE

__all__ = ["VAE", "CVAE", "IWAE", "LikelihoodModule", "Bernoulli", "Gaussian", "DiscretizedLogistic", "DiscretizedLogisticMixture",
           "Likelihood"]
