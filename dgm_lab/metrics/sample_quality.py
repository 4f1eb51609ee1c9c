"""One sample-quality evaluation, from a model or saved images to logged scores and their protocol.

Resolve the feature extractor (``dgm_lab.metrics.extractors``: fails before training when weights
are missing) -> reference features of the first ``num_real`` images of a split, read through the
data contract (``InMemoryImageData.reference_images``: grey levels, never binarized) and cached
(``dgm_lab.metrics.reference_cache``) -> features of exactly ``num_samples`` generated images
(``dgm_lab.metrics.features``: sharded over DDP ranks by fixed chunks, gathered, so every rank
holds the same set as a single process would) -> every selected feature metric on every rank
(``dgm_lab.metrics.feature_metric``: built from ``metrics.implementations``, the built-ins in
``dgm_lab.metrics.scores``) -> keys from the metric-spec table (``dgm_lab.metrics.specs``) and
the protocol beside the scores (``dgm_lab.metrics.protocol``).
The training callback (``dgm_lab.callbacks.sample_quality``) and ``dgm-eval`` both go through
``SampleQuality``; ``evaluate_for_cli`` adds CAS for dgm-eval.
"""

from __future__ import annotations

import time

import torch

from dgm_lab.data.contract import InMemoryImageData, members
from dgm_lab.errors import ConfigError
from dgm_lab.metrics.cas import classification_accuracy_score, synthetic_accuracy_score
from dgm_lab.metrics.extractors import Extractor, missing_inception_message, resolve_extractor
from dgm_lab.metrics.feature_metric import (
    FeatureMetric,
    build_feature_metrics,
    compute_scores,
    reference_layers,
)
from dgm_lab.metrics.features import extract, generated_features
from dgm_lab.metrics.protocol import protocol
from dgm_lab.metrics.reference_cache import reference_features
from dgm_lab.metrics.settings import CAS, Settings
from dgm_lab.metrics.specs import metric_key


def logged_scores(scores: dict[tuple[str, str], float], split: str, extractor: str) -> dict[str, float]:
    """{("fid", ""): 3.1, ("is", "std"): 0.1} -> {"val/fid_lenet": 3.1, "val/is_lenet_std": 0.1}."""
    return {metric_key(split, name, extractor, statistic): float(value) for (name, statistic), value in scores.items()}


def image_data(datamodule) -> InMemoryImageData:
    """``datamodule`` itself, once it is known to offer reference images (the data contract)."""
    if not isinstance(datamodule, InMemoryImageData):
        raise ConfigError(f"sample-quality metrics need real images to compare with, but the datamodule "
                          f"{type(datamodule).__name__} does not implement dgm_lab.data.contract.InMemoryImageData "
                          f"({', '.join(members(InMemoryImageData))}); implement it or set metrics=none.")
    return datamodule


def image_shape(data: InMemoryImageData) -> tuple[int, ...] | None:
    """(C, H, W) of the data's images (the shipped extractor may be chosen by it), None when unknown."""
    first = data.split_images("train", limit=1)
    return tuple(first.shape[1:]) if first is not None and first.dim() == 4 else None


class SampleQuality:
    """Evaluations of one run: the extractor network is built once, the reference features are
    kept per split; generated features live only inside one ``evaluate`` call.

    Args:
        data: the datamodule; its ``reference_images`` (grey levels, never binarized) are the real images.
        metrics: the selected feature metrics, already built; None builds them from ``settings``.
    """

    def __init__(self, settings: Settings, extractor: Extractor, data: InMemoryImageData, device="cpu",
                 metrics: dict[str, FeatureMetric] | None = None):
        self.settings, self.extractor, self.data = settings, extractor, image_data(data)
        self.metrics = build_feature_metrics(settings) if metrics is None else metrics
        self.device = torch.device(device)
        self.net = extractor.build(self.device)
        self._reference: dict[str, tuple[dict, dict]] = {}

    @property
    def dataset(self) -> str:
        return self.data.name

    def reference(self, split: str) -> tuple[dict, dict]:
        if split not in self._reference:
            s = self.settings
            self._reference[split] = reference_features(
                self.extractor, self.net, self.dataset, split, s.num_real,
                lambda: self.data.reference_images(split, limit=s.num_real)[0], s.cache_dir, s.batch_size, self.device,
                data_fingerprint=self.data.fingerprint, layers=reference_layers(self.metrics, self.extractor))
        return self._reference[split]

    def evaluate(self, split: str, model=None, images: torch.Tensor | None = None, source: dict | None = None,
                 rank: int = 0, world_size: int = 1) -> tuple[dict, dict]:
        """(logged scores, protocol) for samples of ``model`` or for uint8 ``images`` (N, C, H, W)."""
        started = time.time()
        self.net.to(self.device)
        if images is not None:
            generated = extract(self.net, images, self.settings.batch_size, self.device, self.extractor.channels)
            source = source or {"source": "images"}
        else:
            generated = generated_features(model, self.net, self.extractor, self.settings, self.device, rank, world_size)
            source = {"source": "model.sample", "seed": self.settings.seed, "chunk_size": self.settings.batch_size,
                      "class_balanced_labels": bool(model.conditional), "world_size": world_size}
        num_generated = len(next(iter(generated.values())))
        needs_reference = any(m.needs_reference for m in self.metrics.values())
        reference, cache = self.reference(split) if needs_reference else (None, None)
        scores, details = compute_scores(self.metrics, generated, reference, self.extractor, self.settings)
        del generated  # nothing of this evaluation outlives it
        record = protocol(self.metrics, self.extractor, self.settings, self.dataset, split, num_generated,
                          reference["num_images"] if reference else None, source, cache, details)
        record["wall_time_s"] = round(time.time() - started, 2)
        return logged_scores(scores, split, self.extractor.key_name), record


def evaluate_for_cli(settings: Settings, datamodule, split: str, device="cpu", model=None,
                     images: torch.Tensor | None = None, source: dict | None = None,
                     labels: torch.Tensor | None = None) -> tuple[dict, dict]:
    """dgm-eval: ({name: score}, {"protocol": ..., "cas": ..., "skipped": ...}) for the samples of
    ``model`` or for uint8 ``images`` (N, C, H, W) (with their ``labels``, for CAS), against
    ``split`` of ``datamodule``."""
    scores, record = {}, {}
    data = image_data(datamodule)
    if settings.feature_metrics:
        extractor = resolve_extractor(settings, data.name, image_shape(data))
        if extractor is None:
            record["skipped"] = missing_inception_message(settings)
        else:
            evaluator = SampleQuality(settings, extractor, data, device)
            found, record["protocol"] = evaluator.evaluate(split, model=model, images=images, source=source)
            scores.update(found)
    if CAS in settings.selected:
        real_train, real_test = data.reference_images("train"), data.reference_images(split)
        if model is not None:
            found, record["cas"] = classification_accuracy_score(
                model, real_train, real_test, num_samples=settings.cas_num_samples, epochs=settings.cas_epochs,
                seed=settings.seed, split=split)
        else:  # a labelled export (dgm-sample export=npz|image_folder): every image of it, labels as given
            if labels is None:
                raise ConfigError("metrics=[cas] on images= needs their labels: an .npz with 'labels' or a folder of "
                                  "class sub-folders (dgm-sample of a class-conditional model writes both).")
            found, record["cas"] = synthetic_accuracy_score(images, labels, real_train, real_test,
                                                            len(data.class_names), epochs=settings.cas_epochs,
                                                            seed=settings.seed, split=split)
        scores.update(found)
    return scores, record
