"""Training and scoring a LeNet classifier (``dgm_lab.metrics.lenet``): used by CAS
(``dgm_lab.metrics.cas``) and by the script that trains the shipped feature extractors
(``dgm_lab.metrics.train_lenet``). Images are float (N, 1, 28, 28) in [0, 1]."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassStatScores

from dgm_lab.metrics.lenet import LeNet


@torch.no_grad()
def accuracy(net: LeNet, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    """Fraction of ``images`` (N, 1, 28, 28) in [0, 1] classified as ``labels``.

    torchmetrics counts the hits; the fraction is taken from its integer counts because its
    ``MulticlassAccuracy`` returns float32, which would change recorded accuracies in the 8th digit."""
    net.eval()
    counts = MulticlassStatScores(num_classes=net.classifier.out_features, average="micro")
    for start in range(0, len(images), batch_size):
        predicted = net(images[start:start + batch_size])[1].argmax(1)  # labels, not logits: no softmax ties
        counts.update(predicted, labels[start:start + batch_size])
    true_positives, _, _, false_negatives, _ = counts.compute().tolist()
    return true_positives / (true_positives + false_negatives)


def fit(net: LeNet, images: torch.Tensor, labels: torch.Tensor, epochs: int, lr: float, batch_size: int,
        seed: int, log=print) -> None:
    """Adam with a cosine learning-rate decay to zero; cross-entropy on (N, 1, 28, 28) images in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    steps = epochs * (len(images) // batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, steps))
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(images), generator=generator)
        total = 0.0
        for start in range(0, len(images) - batch_size + 1, batch_size):
            index = order[start:start + batch_size]
            loss = F.cross_entropy(net(images[index])[1], labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item()
        log(f"epoch {epoch + 1}/{epochs}: train loss {total / (len(images) // batch_size):.4f}")
