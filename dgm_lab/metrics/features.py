"""Features of images and of a model's samples, as {layer: float32 (N, D) on the CPU}.

Input convention of every extractor: uint8 (N, C, H, W) in 0..255; model samples in [0, 1] are
quantized as ``round(255 x)`` (``dgm_lab.data.base.to_uint8``), exactly as ``dgm-sample`` writes
them. Samples are drawn by a fixed chunk plan, so any DDP world size scores the same N samples.
"""

from __future__ import annotations

import torch

from dgm_lab.data.base import to_uint8
from dgm_lab.metrics.extractors import Extractor
from dgm_lab.metrics.settings import Settings
from dgm_lab.progress import progress


@torch.no_grad()
def extract(net, images: torch.Tensor, batch_size: int, device, channels: int) -> dict[str, torch.Tensor]:
    """Features of uint8 images (N, C, H, W) as {layer: float32 (N, D) on the CPU}.

    float32 is the networks' own output precision (exact); statistics are taken in float64 later."""
    if images.dtype != torch.uint8:
        raise ValueError(f"feature extraction takes uint8 images in 0..255, got {images.dtype}")
    out: dict[str, list] = {}
    for start in progress(range(0, len(images), batch_size), desc="features", unit="batch", min_total=2):
        batch = images[start:start + batch_size].to(device)
        if channels == 3 and batch.shape[1] == 1:
            batch = batch.expand(-1, 3, -1, -1)
        for layer, value in net.convert_features_tuple_to_dict(net(batch)).items():
            out.setdefault(layer, []).append(value.float().cpu())
    return {layer: torch.cat(parts) for layer, parts in out.items()}


def chunks(num_samples: int, chunk_size: int) -> list[tuple[int, int, int]]:
    """(chunk index, first sample, size): the fixed plan every world size draws the same samples by."""
    return [(i, start, min(chunk_size, num_samples - start)) for i, start in enumerate(range(0, num_samples, chunk_size))]


@torch.no_grad()
def generated_features(model, net, extractor: Extractor, settings: Settings, device, rank: int = 0,
                       world_size: int = 1) -> dict[str, torch.Tensor]:
    """Features of exactly ``settings.num_samples`` samples of ``model``, identical for any world size.

    Chunk i is drawn with its own generator (seed, i) on rank ``i % world_size``; the chunks are
    gathered and put back in order, so no sample is padded or duplicated and every rank ends with
    the same (num_samples, D) features. Conditional models get class-balanced labels (i mod K)."""
    was_training = model.training
    model.eval()
    local = {}
    try:
        plan = chunks(settings.num_samples, settings.batch_size)
        for index, start, size in progress(plan, desc=f"sampling {settings.num_samples} for features", unit="chunk"):
            if index % world_size != rank:
                continue
            generator = torch.Generator().manual_seed(settings.seed * 1_000_003 + index)
            labels = None
            if model.conditional:
                labels = (torch.arange(start, start + size) % model.num_classes).to(model.device)
            images = model.sample(size, generator=generator, labels=labels)
            local[index] = extract(net, to_uint8(images), settings.batch_size, device, extractor.channels)
    finally:
        model.train(was_training)
    gathered = gather_objects(local, world_size)
    ordered = [gathered[i] for i in sorted(gathered)]
    features = {layer: torch.cat([part[layer] for part in ordered]) for layer in ordered[0]}
    assert all(len(v) == settings.num_samples for v in features.values()), "sample count drifted"
    return features


def gather_objects(local: dict, world_size: int) -> dict:
    """Merge per-rank dicts on every rank (all_gather, not a rank-0 gather: every rank computes)."""
    if world_size == 1:
        return local
    import torch.distributed as dist

    parts = [None] * world_size
    dist.all_gather_object(parts, local)
    merged = {}
    for part in parts:
        merged.update(part)
    return merged
