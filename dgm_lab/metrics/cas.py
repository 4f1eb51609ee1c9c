"""Classification Accuracy Score (Ravuri & Vinyals 2019): train on synthetic, test on real.

A LeNet (``dgm_lab.metrics.lenet``, trained from scratch) learns to classify ``num_samples``
class-balanced labelled samples of a class-conditional model; its accuracy on the real test split
is the CAS. The same LeNet, trained the same way on the same number of real training images, gives
the real-data baseline it is reported next to (``test/cas`` vs ``test/cas_real``). Samples are
quantized to uint8 like the real images (``InMemoryImageData.reference_images``), and images of any
size are resized to 28x28 exactly as the LeNet feature extractor does.
"""

from __future__ import annotations

import time

import torch

from dgm_lab.data.base import to_uint8
from dgm_lab.errors import ConfigError
from dgm_lab.metrics.classifier import accuracy, fit
from dgm_lab.metrics.lenet import LeNet, uint8_to_input
from dgm_lab.metrics.specs import metric_key


@torch.no_grad()
def labelled_samples(model, num_samples: int, seed: int, chunk: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 images (N, C, H, W) on the CPU, ``round(255 x)`` of the samples, labels (N,)): labels
    i mod K, shuffled by ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_samples)[torch.randperm(num_samples, generator=generator)] % model.num_classes
    was_training = model.training
    model.eval()
    parts = [to_uint8(model.sample(len(part), generator=generator, labels=part.to(model.device))).cpu()
             for part in labels.split(chunk)]
    model.train(was_training)
    return torch.cat(parts), labels


def train_and_test(images, labels, test_images, test_labels, num_classes: int, epochs: int, seed: int) -> float:
    """Test accuracy of a LeNet trained from scratch on uint8 (images, labels); the same seed for every call."""
    torch.manual_seed(seed)
    net = LeNet(num_classes=num_classes)
    fit(net, uint8_to_input(images), labels, epochs=epochs, lr=2e-3, batch_size=min(32, len(images)), seed=seed,
        log=lambda _: None)
    return accuracy(net, uint8_to_input(test_images), test_labels)


def classification_accuracy_score(model, real_train: tuple, real_test: tuple, num_samples: int = 10000,
                                  epochs: int = 5, seed: int = 0, split: str = "test") -> tuple[dict, dict]:
    """({split}/cas, {split}/cas_real) and their protocol for ``num_samples`` class-balanced samples of
    ``model`` (a class-conditional generator: ``conditional = True``; ``sample(n, generator, labels)``).
    ``real_train`` / ``real_test``: as for ``synthetic_accuracy_score``."""
    if not model.conditional:
        raise ConfigError("metrics=[cas] needs a class-conditional model (one that samples given labels); "
                          "this model is unconditional.")
    started = time.time()
    images, labels = labelled_samples(model, num_samples, seed)
    scores, record = synthetic_accuracy_score(images, labels, real_train, real_test, model.num_classes, epochs, seed,
                                              split)
    record["labels"] = "class-balanced (i mod K), shuffled"
    record["wall_time_s"] = round(time.time() - started, 2)
    return scores, record


def synthetic_accuracy_score(images: torch.Tensor, labels: torch.Tensor, real_train: tuple, real_test: tuple,
                             num_classes: int, epochs: int = 5, seed: int = 0, split: str = "test") -> tuple[dict, dict]:
    """({split}/cas, {split}/cas_real) and their protocol for labelled synthetic uint8 ``images``
    (N, C, H, W) (a model's samples or a ``dgm-sample`` export).

    Args:
        real_train: (uint8 images (N, C, H, W), labels) for the real-data baseline, as
            ``InMemoryImageData.reference_images`` returns them; the first ``len(images)`` are used
            (capped at N).
        real_test: (uint8 images, labels) of the real split both classifiers are tested on.
    """
    started = time.time()
    if images.shape[1:] != real_test[0].shape[1:]:
        raise ConfigError(f"the synthetic images are (C, H, W) = {tuple(images.shape[1:])} but the real data's are "
                          f"{tuple(real_test[0].shape[1:])}; score an export against the dataset its model learned.")
    if int(labels.max()) >= num_classes:
        raise ConfigError(f"the synthetic labels go up to {int(labels.max())} but the real data has {num_classes} "
                          "classes; score an export against the dataset its model learned.")
    cas = train_and_test(images, labels, *real_test, num_classes, epochs, seed)
    n_real = min(len(images), len(real_train[0]))
    cas_real = train_and_test(real_train[0][:n_real], real_train[1][:n_real], *real_test, num_classes, epochs, seed)
    scores = {metric_key(split, "cas"): cas, metric_key(split, "cas_real"): cas_real}
    record = {"num_synthetic": len(images), "num_real_train": n_real, "num_test": len(real_test[0]),
              "test_split": split, "classifier": "LeNet 20-50-128 from scratch (dgm_lab.metrics.lenet)",
              "epochs": epochs, "seed": seed, "synthetic_per_class": torch.bincount(labels, minlength=num_classes).tolist(),
              "wall_time_s": round(time.time() - started, 2)}
    return scores, record
