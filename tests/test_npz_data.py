"""``data=npz``: the file ``dgm-sample`` writes reads back (a real round trip through dgm-train and
dgm-sample), labels, a separate test file, and one sentence for every malformed file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dgm_lab.data import NPZDataModule
from dgm_lab.errors import ConfigError, DataError
from tests.conftest import run_cli, train_run

CLI = ["logger=none", "trainer.max_epochs=1", "eval.iwae_k=4", "trainer.accelerator=cpu",
       "callbacks.progress_bar.refresh_rate=0"]


def write(path: Path, compressed: bool = True, **arrays) -> Path:
    (np.savez_compressed if compressed else np.savez)(path, **arrays)  # dgm-sample uses savez_compressed
    return path


def images_with_ids(n: int, height: int = 4, width: int = 5, channels: int | None = 3) -> np.ndarray:
    """uint8 (N, H, W[, C]) with every pixel of image i equal to i, to trace images after the shuffle."""
    shape = (n, height, width) + ((channels,) if channels else ())
    return (np.arange(n, dtype=np.uint8).reshape((n,) + (1,) * (len(shape) - 1)) * np.ones(shape, np.uint8))


def ids(images: torch.Tensor) -> list[int]:
    return (images[:, 0, 0, 0] * 255).round().long().tolist()


@pytest.mark.parametrize("channels", [None, 1, 3])
def test_images_and_labels_read_back_split_with_the_fixed_seed(tmp_path, channels):
    path = write(tmp_path / "s.npz", images=images_with_ids(40, channels=channels), labels=np.arange(40) % 4)
    dm = NPZDataModule(path=str(path))
    assert dm.data_shape == [channels or 1, 4, 5] and dm.num_classes == 4 and dm.class_names == ["0", "1", "2", "3"]
    dm.setup()
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 32, "val": 4, "test": 4}
    seen = []
    for split in dm.splits.values():
        assert split.images.dtype == torch.float32 and split.images.shape[1:] == (channels or 1, 4, 5)
        assert split.labels.tolist() == [i % 4 for i in ids(split.images)]
        assert torch.all(split.images == split.images[:, :1, :1, :1])  # every pixel of an image is its id / 255
        seen += ids(split.images)
    assert sorted(seen) == list(range(40))


def test_without_labels_every_image_is_in_one_class(tmp_path):
    dm = NPZDataModule(path=str(write(tmp_path / "s.npz", compressed=False, images=images_with_ids(20))))
    assert dm.num_classes == 1
    dm.setup()
    assert torch.cat([s.labels for s in dm.splits.values()]).tolist() == [0] * 20


def test_a_test_file_gives_the_test_split(tmp_path):
    train = write(tmp_path / "train.npz", images=images_with_ids(20), labels=np.zeros(20, np.int64))
    test = write(tmp_path / "test.npz", images=images_with_ids(6) + 100, labels=np.arange(6, dtype=np.int32))
    dm = NPZDataModule(path=str(train), test_path=str(test), val_size=5)
    assert dm.num_classes == 6  # the largest label of either file
    dm.setup()
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 15, "val": 5, "test": 6}
    assert ids(dm.splits["test"].images) == [100, 101, 102, 103, 104, 105]
    assert dm.splits["test"].labels.tolist() == list(range(6)) and dm.splits["test"].labels.dtype == torch.int64
    with pytest.raises(ConfigError, match="data.test_size"):
        NPZDataModule(path=str(train), test_path=str(test), test_size=0.2)


def bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, what the one sentence must say)."""
    good = images_with_ids(10)
    np.save(tmp_path / "single.npy", good)
    (tmp_path / "garbage.npz").write_bytes(b"PK\x03\x04 not really a zip file")
    return {
        "missing": (tmp_path / "nowhere.npz", "does not exist"),
        "npy": (tmp_path / "single.npy", "single .npy array"),
        "garbage": (tmp_path / "garbage.npz", "could not be read as an .npz"),
        "pickled": (write(tmp_path / "o.npz", images=np.array([good, None], dtype=object)), "could not be read"),
        "no_images": (write(tmp_path / "n.npz", samples=good), "no 'images' array (it has: samples)"),
        "float": (write(tmp_path / "f.npz", images=good.astype(np.float32) / 255), "'images' are float32, not uint8"),
        "ndim": (write(tmp_path / "d.npz", images=good.reshape(10, -1)), "(N, H, W) or (N, H, W, C)"),
        "empty": (write(tmp_path / "e.npz", images=good[:0]), "at least one image"),
        "labels_length": (write(tmp_path / "l.npz", images=good, labels=np.arange(9)), "there are 10 images"),
        "labels_float": (write(tmp_path / "lf.npz", images=good, labels=np.zeros(10)), "integer class indices"),
        "labels_2d": (write(tmp_path / "l2.npz", images=good, labels=np.zeros((10, 1), np.int64)), "shape (10, 1)"),
        "labels_negative": (write(tmp_path / "ln.npz", images=good, labels=-np.ones(10, np.int64)), "negative"),
    }


CASES = ["missing", "npy", "garbage", "pickled", "no_images", "float", "ndim", "empty", "labels_length",
         "labels_float", "labels_2d", "labels_negative"]


@pytest.mark.parametrize("case", CASES)
def test_every_malformed_file_is_one_sentence(tmp_path, case):
    path, expected = bad_files(tmp_path)[case]
    with pytest.raises(DataError) as info:
        NPZDataModule(path=str(path))
    message = str(info.value)
    assert expected in message and str(path) in message and "\n" not in message


def test_a_test_file_that_does_not_match_is_one_sentence(tmp_path):
    train = write(tmp_path / "a.npz", images=images_with_ids(10), labels=np.zeros(10, np.int64))
    other_shape = write(tmp_path / "b.npz", images=images_with_ids(4, height=6), labels=np.zeros(4, np.int64))
    unlabelled = write(tmp_path / "c.npz", images=images_with_ids(4))
    with pytest.raises(DataError, match="images of one shape"):
        NPZDataModule(path=str(train), test_path=str(other_shape))
    with pytest.raises(DataError, match="give both data.path and data.test_path labels, or neither"):
        NPZDataModule(path=str(train), test_path=str(unlabelled))


def test_dgm_sample_output_trains_through_data_npz(tmp_path):
    """The real round trip: train on digits, draw samples with dgm-sample, train again on those."""
    run = tmp_path / "digits"
    train_run(run, *CLI, "data=digits", "test=false", fast=False)
    samples = tmp_path / "samples.npz"
    result = run_cli("dgm-sample", f"ckpt_path={run}", "num_samples=60", f"output={samples}")
    assert result.returncode == 0, result.stderr[-2000:]
    written = np.load(samples)["images"]
    dm = NPZDataModule(path=str(samples))
    assert dm.data_shape == [1, 8, 8] and dm.num_classes == 1
    dm.setup()
    every = torch.cat([s.images for s in dm.splits.values()])
    assert sorted(every.flatten().tolist()) == sorted((written.astype(np.float32) / 255).flatten().tolist())
    summary = train_run(tmp_path / "again", *CLI, "data=npz", f"data.path={samples}", fast=False)
    assert summary["status"] == "completed" and summary["config"]["model"]["data_shape"] == [1, 8, 8]


@pytest.mark.parametrize("case", ["missing", "float"])
def test_dgm_train_on_a_bad_npz_exits_2_with_one_line(tmp_path, case):
    path, expected = bad_files(tmp_path)[case]
    result = run_cli("dgm-train", *CLI, "data=npz", f"data.path={path}", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("dgm-train: error:")]
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in result.stderr
