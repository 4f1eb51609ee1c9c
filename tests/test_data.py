"""Datamodules: IDX parsing, the MNIST split and binarization on tiny fake files, the embedded
datasets, and the one-fancy-index-per-batch loaders. No network access is ever attempted."""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import dgm_lab.data.mnist as mnist_module
from dgm_lab.data import DigitsDataModule, MNIST5kDataModule, MNISTDataModule
from dgm_lab.data.base import TensorBatches
from dgm_lab.data.mnist import read_idx
from dgm_lab.errors import ConfigError, DataError


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as IDX: 0x00 0x00, type 0x08 (ubyte), ndim, big-endian int32 dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    data = idx_bytes(array)
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


# -- read_idx --------------------------------------------------------------------------------
@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("shape", [(7,), (3, 4, 5)])
def test_read_idx_round_trips_raw_and_gzipped_files(tmp_path, gz, shape):
    array = np.random.default_rng(0).integers(0, 256, size=shape).astype(np.uint8)
    path = write_idx(tmp_path / "file-idx-ubyte", array, gz=gz)
    got = read_idx(path)
    assert got.shape == shape and got.dtype == np.uint8
    np.testing.assert_array_equal(got, array)


def test_read_idx_rejects_a_wrong_magic_number(tmp_path):
    data = bytearray(idx_bytes(np.zeros((2, 2), np.uint8)))
    data[2] = 0x0D  # IDX type code of float32, not uint8
    path = tmp_path / "float-idx"
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="not a uint8 IDX file") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_rejects_a_file_truncated_in_the_data(tmp_path):
    path = tmp_path / "short-idx"
    path.write_bytes(idx_bytes(np.ones((4, 3, 3), np.uint8))[:-5])
    with pytest.raises(DataError, match=r"truncated \(31 of 36 values\)") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_rejects_a_file_truncated_in_the_header(tmp_path):
    path = tmp_path / "header-idx"
    path.write_bytes(idx_bytes(np.ones((4, 3, 3), np.uint8))[:8])  # magic + first dimension only
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)


def test_read_idx_rejects_a_truncated_gzip_file(tmp_path):
    compressed = gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8).reshape(2, 10, 10)))
    path = tmp_path / "partial-idx-ubyte.gz"
    path.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(DataError):
        read_idx(path)


# -- MNIST on tiny fake IDX files ---------------------------------------------------------------
N_TRAIN, N_TEST, N_VAL = 60, 10, 10


def fake_images(n: int, offset: int, rng: np.random.Generator) -> np.ndarray:
    """Random grey images with pixel [0, 0] = offset + index, so rows can be traced after the shuffle;
    row 0 is all 0 and row 1 is all 255 apart from that pixel, to pin binarization."""
    images = rng.integers(0, 256, size=(n, 28, 28)).astype(np.uint8)
    images[0], images[1] = 0, 255
    images[:, 0, 0] = offset + np.arange(n)
    return images


@pytest.fixture
def fake_mnist(tmp_path, monkeypatch):
    """A data_dir with MNIST/raw/ holding 60 train and 10 test images (train gzipped, test raw)."""
    monkeypatch.setattr(mnist_module, "VAL_SIZE", N_VAL)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    train, test = fake_images(N_TRAIN, 0, rng), fake_images(N_TEST, 100, rng)
    write_idx(raw / "train-images-idx3-ubyte", train, gz=True)
    write_idx(raw / "train-labels-idx1-ubyte", np.arange(N_TRAIN) % 10, gz=True)
    write_idx(raw / "t10k-images-idx3-ubyte", test)
    write_idx(raw / "t10k-labels-idx1-ubyte", (np.arange(N_TEST) + 3) % 10)
    return SimpleNamespace(data_dir=str(tmp_path), train=train, test=test)


def setup_mnist(fake, **kwargs) -> MNISTDataModule:
    dm = MNISTDataModule(data_dir=fake.data_dir, **kwargs)
    dm.setup()
    return dm


def row_ids(images: torch.Tensor) -> np.ndarray:
    """The index written into pixel [0, 0] of each grey image."""
    return np.rint(images[:, 0, 0, 0].numpy() * 255).astype(int)


def test_mnist_splits_shapes_range_and_labels(fake_mnist):
    dm = setup_mnist(fake_mnist)
    splits = dm.splits
    assert {k: len(v) for k, v in splits.items()} == {"train": N_TRAIN - N_VAL, "val": N_VAL, "test": N_TEST}
    for split in splits.values():
        assert split.images.shape[1:] == (1, 28, 28) and split.images.dtype == torch.float32
        assert split.images.min() >= 0 and split.images.max() <= 1
        assert split.labels.dtype == torch.int64
    # Test split: the official file in file order, scaled by 1/255.
    expected_test = torch.from_numpy(fake_mnist.test).float().unsqueeze(1) / 255
    torch.testing.assert_close(splits["test"].images, expected_test, rtol=0, atol=0)
    assert splits["test"].labels.tolist() == [(i + 3) % 10 for i in range(N_TEST)]
    # Train + val: a partition of the training file, each image still paired with its own label.
    train_ids, val_ids = row_ids(splits["train"].images), row_ids(splits["val"].images)
    assert sorted([*train_ids, *val_ids]) == list(range(N_TRAIN))
    assert splits["train"].labels.tolist() == (train_ids % 10).tolist()
    assert splits["val"].labels.tolist() == (val_ids % 10).tolist()
    for split, ids in (("train", train_ids), ("val", val_ids)):
        expected = torch.from_numpy(fake_mnist.train[ids]).float().unsqueeze(1) / 255
        torch.testing.assert_close(splits[split].images, expected, rtol=0, atol=0)


def test_mnist_split_does_not_depend_on_the_global_seed(fake_mnist):
    torch.manual_seed(1)
    first = row_ids(setup_mnist(fake_mnist).splits["val"].images)
    torch.manual_seed(2)
    second = row_ids(setup_mnist(fake_mnist).splits["val"].images)
    np.testing.assert_array_equal(first, second)


def test_mnist_static_binarization_is_binary_and_fixed(fake_mnist):
    torch.manual_seed(1)
    first = setup_mnist(fake_mnist, binarize="static")
    torch.manual_seed(2)  # the binarization seed is DATA_SEED, not the global one
    second = setup_mnist(fake_mnist, binarize="static")
    grey = setup_mnist(fake_mnist)
    for split in ("train", "val", "test"):
        images = first.splits[split].images
        assert set(images.unique().tolist()) == {0.0, 1.0}
        torch.testing.assert_close(images, second.splits[split].images, rtol=0, atol=0)
        # Black pixels stay 0, white pixels become 1, grey ones are drawn with P(1) = grey level.
        g = grey.splits[split].images
        assert torch.all(images[g == 0] == 0) and torch.all(images[g == 1] == 1)
        assert abs(images.mean().item() - g.mean().item()) < 0.02
    assert first.splits["train"].labels.tolist() == grey.splits["train"].labels.tolist()


def test_mnist_dynamic_binarization_fixes_eval_splits_and_leaves_train_grey(fake_mnist):
    dm = setup_mnist(fake_mnist, binarize="dynamic")
    static = setup_mnist(fake_mnist, binarize="static")
    grey = setup_mnist(fake_mnist)
    for split in ("val", "test"):
        assert set(dm.splits[split].images.unique().tolist()) == {0.0, 1.0}
        torch.testing.assert_close(dm.splits[split].images, setup_mnist(fake_mnist, binarize="dynamic").splits[split].images)
    torch.testing.assert_close(dm.splits["train"].images, grey.splits["train"].images, rtol=0, atol=0)
    assert not torch.equal(dm.splits["train"].images, static.splits["train"].images)
    # The loader hands out grey training batches: binarization happens after the device transfer.
    images, _ = next(iter(dm.train_dataloader()))
    assert len(images.unique()) > 2


def test_dynamic_binarization_happens_in_on_after_batch_transfer_only_while_training(fake_mnist):
    dm = setup_mnist(fake_mnist, binarize="dynamic")
    batch = next(iter(dm.train_dataloader()))
    assert dm.on_after_batch_transfer(batch, 0) is batch  # no trainer attached: untouched
    dm.trainer = SimpleNamespace(training=False)  # validating / testing: untouched
    assert dm.on_after_batch_transfer(batch, 0) is batch
    dm.trainer = SimpleNamespace(training=True)
    torch.manual_seed(0)
    first, labels = dm.on_after_batch_transfer(batch, 0)
    second, _ = dm.on_after_batch_transfer(batch, 0)
    assert labels is batch[1]
    assert set(first.unique().tolist()) <= {0.0, 1.0} and first.shape == batch[0].shape
    assert not torch.equal(first, second)  # resampled every time the batch is drawn
    assert torch.all(first[batch[0] == 0] == 0) and torch.all(first[batch[0] == 1] == 1)
    assert abs(first.mean().item() - batch[0].mean().item()) < 0.03


def test_no_binarization_in_on_after_batch_transfer_unless_dynamic(fake_mnist):
    for mode in ("none", "static"):
        dm = setup_mnist(fake_mnist, binarize=mode)
        batch = next(iter(dm.train_dataloader()))
        dm.trainer = SimpleNamespace(training=True)  # attached after the loader, which wants world_size
        assert dm.on_after_batch_transfer(batch, 0) is batch


def _offline(*args, **kwargs):
    raise RuntimeError("offline")


@pytest.mark.parametrize("hook", ["setup", "prepare_data"])
def test_mnist_missing_files_raise_data_error_naming_the_raw_folder(tmp_path, monkeypatch, hook):
    import torchvision

    monkeypatch.setattr(torchvision.datasets, "MNIST", _offline)  # never touch the network
    dm = MNISTDataModule(data_dir=str(tmp_path))
    with pytest.raises(DataError) as info:
        getattr(dm, hook)()
    message = str(info.value)
    assert str(tmp_path / "MNIST" / "raw") in message
    assert "train-images-idx3-ubyte.gz" in message and "t10k-labels-idx1-ubyte.gz" in message
    assert "RuntimeError" in message


def test_mnist_partially_missing_files_name_only_the_missing_ones(fake_mnist, monkeypatch):
    import torchvision

    monkeypatch.setattr(torchvision.datasets, "MNIST", _offline)
    (Path(fake_mnist.data_dir) / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError) as info:
        MNISTDataModule(data_dir=fake_mnist.data_dir).setup()
    message = str(info.value)
    assert "t10k-labels-idx1-ubyte.gz" in message and "train-images" not in message


REAL_DATA_DIR = os.environ.get("DGM_DATA_DIR")


@pytest.mark.skipif(not (REAL_DATA_DIR and (Path(REAL_DATA_DIR) / "MNIST" / "raw").is_dir()),
                    reason="set DGM_DATA_DIR to a folder with MNIST/raw/ to test the real MNIST files")
def test_real_mnist_sizes_and_pixel_mean():
    dm = MNISTDataModule()  # data_dir unset: the folder comes from DGM_DATA_DIR
    dm.setup()
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 55000, "val": 5000, "test": 10000}
    assert dm.splits["train"].images.shape[1:] == (1, 28, 28)
    # The well-known MNIST training pixel mean is 0.1307.
    assert dm.splits["train"].images.mean().item() == pytest.approx(0.1307, abs=0.003)
    assert sorted(dm.splits["test"].labels.unique().tolist()) == list(range(10))


# -- embedded datasets -------------------------------------------------------------------------
def test_digits_datamodule_sizes_shapes_and_values():
    from sklearn.datasets import load_digits

    dm = DigitsDataModule()
    dm.setup()
    assert dm.data_shape == [1, 8, 8]
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 1437, "val": 180, "test": 180}
    for split in dm.splits.values():
        assert split.images.shape[1:] == (1, 8, 8)
        assert split.images.min() >= 0 and split.images.max() <= 1
        # Grey levels 0..16 scaled by 1/16.
        torch.testing.assert_close(split.images * 16, (split.images * 16).round())
    # Together the splits hold every sklearn digit exactly once: compare sums and label counts.
    digits = load_digits()
    total = sum(split.images.double().sum().item() for split in dm.splits.values())
    assert total == pytest.approx(digits.images.sum() / 16, rel=1e-9)
    counts = sum(torch.bincount(split.labels, minlength=10) for split in dm.splits.values())
    assert counts.tolist() == np.bincount(digits.target, minlength=10).tolist()


def test_mnist5k_datamodule_sizes_and_balanced_labels():
    dm = MNIST5kDataModule()
    dm.setup()
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 4000, "val": 500, "test": 500}
    assert dm.splits["train"].images.shape[1:] == (1, 28, 28)
    counts = torch.bincount(dm.splits["train"].labels, minlength=10)
    # 500 per class overall, so about 400 per class in a random 80% train split.
    assert counts.min() >= 340 and counts.max() <= 460, counts.tolist()
    for split in ("val", "test"):
        assert torch.bincount(dm.splits[split].labels, minlength=10).min() >= 25


# -- batches -------------------------------------------------------------------------------------
class RecordingBatches(TensorBatches):
    """TensorBatches that records every index it is asked for."""

    def __init__(self, inner: TensorBatches):
        super().__init__(inner.images, inner.labels)
        self.requests: list = []

    def __getitem__(self, index):
        self.requests.append(list(index) if not isinstance(index, int) else index)
        return super().__getitem__(index)


def test_train_loader_builds_each_full_batch_with_one_fancy_index():
    dm = DigitsDataModule(batch_size=100)
    dm.setup()
    recorder = dm.splits["train"] = RecordingBatches(dm.splits["train"])
    loader = dm.train_dataloader()
    assert len(loader) == 1437 // 100  # drop_last: every training batch is full
    batches = list(loader)
    assert len(batches) == 14 and len(recorder.requests) == 14  # one dataset access per batch
    seen = []
    for (images, labels), indices in zip(batches, recorder.requests, strict=True):
        assert isinstance(indices, list) and len(indices) == 100
        assert images.shape == (100, 1, 8, 8) and labels.shape == (100,)
        torch.testing.assert_close(images, recorder.images[indices], rtol=0, atol=0)
        torch.testing.assert_close(labels, recorder.labels[indices], rtol=0, atol=0)
        seen += indices
    assert len(set(seen)) == 1400  # sampled without replacement within an epoch
    assert seen != sorted(seen)  # and shuffled


def test_eval_loaders_keep_order_and_the_last_partial_batch():
    dm = DigitsDataModule(batch_size=32, eval_batch_size=50)
    dm.setup()
    loader = dm.val_dataloader()
    assert len(loader) == 4  # 180 = 3 * 50 + 30
    images = torch.cat([x for x, _ in loader])
    torch.testing.assert_close(images, dm.splits["val"].images, rtol=0, atol=0)


def test_train_subset_smaller_than_a_batch_still_gives_one_batch():
    dm = DigitsDataModule(batch_size=100, train_subset=40)
    dm.setup()
    batches = list(dm.train_dataloader())
    assert len(batches) == 1 and batches[0][0].shape == (40, 1, 8, 8)


@pytest.mark.parametrize("kwargs,key", [
    ({"batch_size": 0}, "data.batch_size"),
    ({"batch_size": -3}, "data.batch_size"),
    ({"binarize": "maybe"}, "data.binarize"),
    ({"train_subset": 0}, "data.train_subset"),
])
def test_bad_data_config_raises_config_error_naming_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        DigitsDataModule(**kwargs)
