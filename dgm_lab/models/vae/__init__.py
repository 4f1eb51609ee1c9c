"""Variational autoencoders: the VAE (beta, KL warm-up, cyclical annealing, free bits), the IWAE,
the semi-supervised M2 (and M1+M2),
the likelihood-evaluation base they share and the decoder likelihoods p(x | z)
(Bernoulli, Gaussian, discretized logistic and its PixelCNN++ mixture).

The classes are imported on first use (``dgm_lab.lazy``): ``config.py`` loads without torch."""

from dgm_lab.lazy import lazy_exports

_EXPORTS = {"VAE": "vae", "CVAE": "cvae", "IWAE": "iwae", "M2": "m2", "LikelihoodModule": "likelihood_module", "Bernoulli": "likelihoods",
            "Gaussian": "likelihoods", "DiscretizedLogistic": "likelihoods", "Likelihood": "likelihoods",
            "DiscretizedLogisticMixture": "logistic_mixture"}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
