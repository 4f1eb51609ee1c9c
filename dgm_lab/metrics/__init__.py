"""Metrics of generative models, one job per module.

Sample quality (FID, IS, KID, precision/recall and plug-ins such as docs/extending.md's density and
coverage; ``dgm-train metrics=...`` and ``dgm-eval``):

* ``settings``: the ``metrics`` config node (``Settings``), its defaults and validation;
* ``extractors``: which network scores a dataset (LeNet by dataset, InceptionV3), its weights;
* ``features``: uint8 images and a model's samples to features (fixed chunks, DDP all_gather);
* ``reference_cache``: features of the real images, cached on disk by everything that changes them;
* ``feature_metric``: what a feature metric is (``FeatureMetric``), building the selected ones from
  ``metrics.implementations`` by ``_target_``, and running them on their layers' features;
* ``scores``: the built-in feature metrics (FID, IS, KID, precision/recall): torch-fidelity's
  functions on features, in float64 (the numerics notes);
* ``protocol``: the record stored beside every score (counts, split, extractor, versions);
* ``image_files``: saved samples (a folder of images or an ``.npz``) for ``dgm-eval images=``;
* ``sample_quality``: the evaluator that ties them together, and what ``dgm-eval`` calls;
* ``cas``: classification accuracy score of class-conditional models (train on samples, test on real);
* ``classifier``: LeNet training and accuracy (CAS and ``train_lenet``);
* ``lenet``: the LeNet network, registered with torch-fidelity; ``train_lenet``: trains its weights.

Likelihoods: ``likelihood`` (Gaussian densities and KL, the IWAE estimate, bits/dim, active units), ``ais`` (annealed importance
sampling of Boltzmann machines). Names: ``specs``, the table every logged key is built from.
"""
