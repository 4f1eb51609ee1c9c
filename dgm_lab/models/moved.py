"""Class paths that moved when the models became one package per family: old ``_target_`` -> new;
and the model settings that went away.

Checkpoints and run folders written before the move store the old strings; loading them
rewrites each ``_target_`` found here. Paths that did not change (``dgm_lab.models.vae.VAE``,
``dgm_lab.models.gan.GAN``, ``dgm_lab.models.networks.MLP`` ...) are not listed.
"""

MOVED_TARGETS: dict[str, str] = {
    # VAE family
    "dgm_lab.models.iwae.IWAE": "dgm_lab.models.vae.IWAE",
    "dgm_lab.models.likelihood_model.LikelihoodModule": "dgm_lab.models.vae.LikelihoodModule",
    "dgm_lab.models.likelihoods.Bernoulli": "dgm_lab.models.vae.Bernoulli",
    "dgm_lab.models.likelihoods.Gaussian": "dgm_lab.models.vae.Gaussian",
    "dgm_lab.models.likelihoods.DiscretizedLogistic": "dgm_lab.models.vae.DiscretizedLogistic",
    # GAN family
    "dgm_lab.models.gan_networks.MLPGenerator": "dgm_lab.models.gan.MLPGenerator",
    "dgm_lab.models.gan_networks.MLPDiscriminator": "dgm_lab.models.gan.MLPDiscriminator",
    "dgm_lab.models.gan_networks.DCGANGenerator": "dgm_lab.models.gan.DCGANGenerator",
    "dgm_lab.models.gan_networks.DCGANDiscriminator": "dgm_lab.models.gan.DCGANDiscriminator",
    "dgm_lab.models.gan_networks.LabelInput": "dgm_lab.models.gan.LabelInput",
    "dgm_lab.models.gan_networks.ProjectionHead": "dgm_lab.models.gan.ProjectionHead",
    "dgm_lab.models.gan_losses.AdversarialLoss": "dgm_lab.models.gan.losses.AdversarialLoss",
    "dgm_lab.models.gan_losses.NonSaturating": "dgm_lab.models.gan.losses.NonSaturating",
    "dgm_lab.models.gan_losses.Minimax": "dgm_lab.models.gan.losses.Minimax",
    "dgm_lab.models.gan_losses.Wasserstein": "dgm_lab.models.gan.losses.Wasserstein",
    "dgm_lab.models.gan_losses.Hinge": "dgm_lab.models.gan.losses.Hinge",
    "dgm_lab.models.gan_losses.LeastSquares": "dgm_lab.models.gan.losses.LeastSquares",
    # Boltzmann family
    "dgm_lab.models.rbm.RBM": "dgm_lab.models.boltzmann.RBM",
    "dgm_lab.models.rbm.RBMLayer": "dgm_lab.models.boltzmann.RBMLayer",
    "dgm_lab.models.rbm.BoltzmannModule": "dgm_lab.models.boltzmann.BoltzmannModule",
    "dgm_lab.models.dbn.DBN": "dgm_lab.models.boltzmann.DBN",
    "dgm_lab.models.dbm.DBM": "dgm_lab.models.boltzmann.DBM",
    "dgm_lab.models.dbm.DBMParams": "dgm_lab.models.boltzmann.DBMParams",
}

# Model settings that no longer exist, per class (new path): drop them from an old config before
# rebuilding its model. The filter-grid interval moved to ``callbacks.weight_filters.every_n_epochs``.
REMOVED_MODEL_KEYS: dict[str, list[str]] = {
    "dgm_lab.models.boltzmann.RBM": ["filter_grid_every_n_epochs"],
    "dgm_lab.models.boltzmann.DBN": ["filter_grid_every_n_epochs"],
    "dgm_lab.models.boltzmann.DBM": ["filter_grid_every_n_epochs"],
}
