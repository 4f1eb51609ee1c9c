"""In-memory datamodule base: batches are sliced from tensors, never collated item by item.

A step of a small VAE takes a few milliseconds on a CPU, so per-item ``__getitem__`` plus
collate would dominate it. ``TensorBatches`` is indexed by a whole list of indices (the
sampler is a ``BatchSampler``), so one fancy-index builds each batch.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    DistributedSampler,
    RandomSampler,
    SequentialSampler,
)

from dgm_lab.data.labeled import (
    LabeledDrawBatchSampler,
    balanced_subset,
    check_label_options,
    hide_labels,
)
from dgm_lab.errors import ConfigError

BINARIZE_MODES = ("none", "static", "dynamic")
# Fixed seed for dataset splits and static binarization: the data a run sees must not
# depend on the training seed, or runs with different seeds would be scored on different sets.
DATA_SEED = 1234


class TensorBatches(Dataset):
    """Images (N, C, H, W) float in [0, 1] and integer labels (N,), indexed by lists of indices."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index):
        return self.images[index], self.labels[index]


class EpochBatchSampler(BatchSampler):
    """BatchSampler that forwards ``set_epoch`` so Lightning reshuffles DDP shards every epoch."""

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)


class TensorDataModule(pl.LightningDataModule):
    """Base for datamodules whose splits fit in memory.

    Subclasses implement ``load_splits()`` returning ``{"train"|"val"|"test": (images, labels)}``
    with images float32 in [0, 1], shaped (N, C, H, W).

    Labels (``dgm_lab.data.contract.PartlyLabeled``): ``num_labeled`` keeps the labels of that many
    training images, balanced over the classes and chosen with ``label_seed``; the others get
    ``UNLABELED``. ``labeled_per_batch`` appends that many labelled draws to every training batch.

    Binarization (for Bernoulli likelihoods):
      * ``none``: grey levels are kept.
      * ``static``: every split is binarized once with a fixed seed (DATA_SEED).
      * ``dynamic``: training images are resampled each time they are drawn; val/test are
        binarized once with the fixed seed so that evaluation is deterministic.
    """

    name = "tensor"
    num_classes = 10
    image_shape: tuple[int, int, int] = (1, 28, 28)

    def __init__(
        self,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        binarize: str = "none",
        num_workers: int = 0,
        train_subset: int | None = None,
        data_dir: str | None = None,
        num_labeled: int | None = None,
        label_seed: int = DATA_SEED,
        labeled_per_batch: int = 0,
    ):
        super().__init__()
        check_label_options(num_labeled, label_seed, labeled_per_batch)
        if binarize not in BINARIZE_MODES:
            raise ConfigError(f"data.binarize={binarize!r} is not one of {', '.join(BINARIZE_MODES)}.")
        if batch_size < 1:
            raise ConfigError(f"data.batch_size must be a positive integer, got {batch_size}.")
        if train_subset is not None and train_subset < 1:
            raise ConfigError(f"data.train_subset must be a positive integer or null, got {train_subset}.")
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or max(batch_size, 500)
        self.binarize = binarize
        self.num_workers = num_workers
        self.train_subset = train_subset
        self.data_dir = data_dir
        self.num_labeled, self.label_seed, self.labeled_per_batch = num_labeled, label_seed, labeled_per_batch
        self._labeled_index: torch.Tensor | None = None
        self._train_labels: torch.Tensor | None = None  # every training label, for evaluation references only
        self.batches_per_step = 1
        self.fingerprint = self.name  # a fixed dataset; datamodules whose content depends on arguments set their own
        self.splits: dict[str, TensorBatches] = {}
        self._grey_levels: dict[str, torch.Tensor] = {}  # uint8 copies of binarized splits

    # -- to implement -------------------------------------------------------------------
    def load_splits(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        raise NotImplementedError

    # -- shape facts the model config is filled from -----------------------------------
    @property
    def data_shape(self) -> list[int]:
        return list(self.image_shape)

    # -- Lightning hooks ---------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        generator = torch.Generator().manual_seed(DATA_SEED)
        for split, (images, labels) in self.load_splits().items():
            if split == "train" and self.train_subset:
                images, labels = images[: self.train_subset], labels[: self.train_subset]
            if split == "train":
                labels = self._keep_labels(labels.long())
            binarize_now = self.binarize == "static" or (self.binarize == "dynamic" and split != "train")
            if self.binarize != "none":  # samples are compared with grey levels, not with their binarization
                self._grey_levels[split] = to_uint8(images)
            if binarize_now:
                images = torch.bernoulli(images, generator=generator)
            self.splits[split] = TensorBatches(images.contiguous(), labels.long())

    def _keep_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """The training labels the model may see: all, or the balanced subset of ``num_labeled``."""
        self._train_labels = labels
        if self.num_labeled is None:
            self._labeled_index = torch.arange(len(labels))
            return labels
        self._labeled_index = balanced_subset(labels, self.num_labeled, self.num_classes, self.label_seed, self.name)
        return hide_labels(labels, self._labeled_index)

    # -- the labelled-subset contract (dgm_lab.data.contract.PartlyLabeled) ----------------
    def labeled_indices(self) -> torch.Tensor:
        self.setup()
        return self._labeled_index

    def label_record(self) -> dict:
        self.setup()
        kept = self._train_labels[self._labeled_index]
        return {"num_labeled": self.num_labeled, "label_seed": self.label_seed,
                "labeled_per_batch": self.labeled_per_batch, "num_train": len(self._train_labels),
                "labeled_per_class": torch.bincount(kept, minlength=self.num_classes).tolist()}

    # -- the data contract (dgm_lab.data.contract.InMemoryImageData) ---------------------
    @property
    def class_names(self) -> list[str]:
        """Label indices as names; datamodules with named classes assign their own list."""
        return getattr(self, "_class_names", None) or [str(i) for i in range(self.num_classes)]

    @class_names.setter
    def class_names(self, names: list[str]) -> None:
        self._class_names = list(names)

    def split_images(self, split: str, limit: int | None = None) -> torch.Tensor | None:
        self.setup()
        return self.splits[split].images[:limit] if split in self.splits else None

    def reference_images(self, split: str, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        self.setup()
        if split not in self.splits:
            raise ConfigError(f"the dataset {self.name} has no {split!r} split to compare samples with; "
                              f"use one of {', '.join(self.splits)}.")
        images = self._grey_levels.get(split)
        if images is None:
            images = to_uint8(self.splits[split].images[:limit])
        # References are for evaluation (the real-data baseline of CAS): every label, never hidden ones.
        labels = self._train_labels if split == "train" else self.splits[split].labels
        return images[:limit], labels[:limit]

    def set_batches_per_step(self, count: int) -> None:
        if count < 1:
            raise ConfigError(f"batches per step must be a positive integer, got {count}.")
        self.batches_per_step = int(count)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        # Dynamic binarization on the device the step runs on, drawn from the seeded global RNG.
        if self.binarize == "dynamic" and self.trainer is not None and self.trainer.training:
            images, labels = batch
            return torch.bernoulli(images), labels
        return batch

    def _loader(self, split: str, shuffle: bool, batch_size: int, drop_last: bool) -> DataLoader:
        self.setup()
        dataset = self.splits[split]
        trainer = self.trainer
        distributed = trainer is not None and trainer.world_size > 1
        if distributed:
            # Each rank sees its own shard; the caller disables Lightning's sampler injection.
            sampler = DistributedSampler(
                dataset, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=shuffle,
                drop_last=drop_last,
            )
        else:
            sampler = RandomSampler(dataset) if shuffle else SequentialSampler(dataset)
        batches = EpochBatchSampler(sampler, batch_size=batch_size, drop_last=drop_last)
        if split == "train" and self.labeled_per_batch:
            batches = LabeledDrawBatchSampler(batches, self._labeled_index, self.labeled_per_batch,
                                              self.batches_per_step, trainer.global_rank if distributed else 0)
        return DataLoader(
            dataset,
            sampler=batches,
            batch_size=None,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        self.setup()
        return self._train_loader(shuffle=True)

    def _train_loader(self, shuffle: bool) -> DataLoader:
        batch_size = self.batch_size * self.batches_per_step
        drop_last = len(self.splits["train"]) > batch_size  # keep a lone short batch of a tiny subset
        return self._loader("train", shuffle=shuffle, batch_size=batch_size, drop_last=drop_last)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False, batch_size=self.eval_batch_size, drop_last=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False, batch_size=self.eval_batch_size, drop_last=False)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] -> uint8 0..255 as ``round(255 x)``, the quantization every metric
    and ``dgm-sample`` use."""
    return images.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8)


def split_tensor(images: torch.Tensor, labels: torch.Tensor, sizes: list[int]):
    """Shuffle with DATA_SEED and cut into consecutive pieces of the given sizes."""
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(DATA_SEED))
    pieces, start = [], 0
    for size in sizes:
        index = order[start : start + size]
        pieces.append((images[index], labels[index]))
        start += size
    return pieces
