"""``data=cifar10`` on tiny batch files written in the dataset's own pickle format (Python 2 style
bytes keys, numpy uint8 rows of 3072 values); missing, truncated and foreign files; dgm-train."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from dgm_lab.data import CIFAR10DataModule
from dgm_lab.data.cifar10 import read_batch
from dgm_lab.errors import DataError
from tests.conftest import run_cli, train_run

PER_BATCH = 6


class Python2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 ``str`` (SHORT_BINSTRING / BINSTRING opcodes), which is how the
    original batches hold their keys and pixel data: ``encoding="bytes"`` reads them as bytes,
    torchvision's ``encoding="latin1"`` as str."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_python2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + len(obj).to_bytes(4, "little") + obj)
        self.memoize(obj)

    dispatch[bytes] = save_python2_str


def python2_pickle(obj) -> bytes:
    buffer = io.BytesIO()
    Python2Pickler(buffer, protocol=2).dump(obj)
    # numpy's reconstructor under the name Python 2's numpy wrote into the original files.
    return buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def batch_bytes(data: np.ndarray, labels: list[int], name: str) -> bytes:
    """A batch as the archive has it: a dict of Python 2 strings, pixel rows and a list of labels."""
    return python2_pickle({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                           b"filenames": [f"{name}_{i}.png".encode() for i in range(len(labels))]})


def image_rows(first_id: int, count: int) -> np.ndarray:
    """(count, 3072) uint8 rows: red plane = image id, green = 2 x id mod 256, blue = 7."""
    ids = np.arange(first_id, first_id + count)
    planes = [np.repeat(ids[:, None], 1024, 1), np.repeat((2 * ids % 256)[:, None], 1024, 1), np.full((count, 1024), 7)]
    return np.concatenate(planes, axis=1).astype(np.uint8)


@pytest.fixture
def cifar_dir(tmp_path) -> Path:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for b in range(5):
        data = image_rows(b * PER_BATCH, PER_BATCH)
        (folder / f"data_batch_{b + 1}").write_bytes(batch_bytes(data, [(b * PER_BATCH + i) % 10 for i in range(PER_BATCH)],
                                                                 f"training batch {b + 1} of 5"))
    (folder / "test_batch").write_bytes(batch_bytes(image_rows(200, 4), [3, 1, 4, 1], "testing batch 1 of 1"))
    names = [b"plane", b"car", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    (folder / "batches.meta").write_bytes(python2_pickle({b"label_names": names, b"num_cases_per_batch": 10000}))
    return tmp_path


def test_the_original_pickle_names_numpy_core():
    raw = batch_bytes(image_rows(0, 1), [0], "x")
    assert b"cnumpy.core.multiarray\n_reconstruct" in raw and b"_core" not in raw and b"_codecs" not in raw


def test_cifar10_splits_layout_and_labels(cifar_dir):
    dm = CIFAR10DataModule(data_dir=str(cifar_dir), val_size=5)
    assert dm.data_shape == [3, 32, 32] and dm.num_classes == 10 and dm.name == "cifar10"
    dm.setup()
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 25, "val": 5, "test": 4}
    assert dm.class_names[:2] == ["plane", "car"]  # from batches.meta
    ids = {split: (s.images[:, 0, 0, 0] * 255).round().long() for split, s in dm.splits.items()}
    assert sorted(torch.cat([ids["train"], ids["val"]]).tolist()) == list(range(30))
    assert ids["test"].tolist() == [200, 201, 202, 203] and dm.splits["test"].labels.tolist() == [3, 1, 4, 1]
    for split, s in dm.splits.items():
        if split != "test":
            assert s.labels.tolist() == (ids[split] % 10).tolist()  # each image kept its own label
        # Channel planes: red = id, green = 2 id mod 256, blue = 7, everywhere in the 32x32 image.
        torch.testing.assert_close(s.images[:, 1] * 255, ((2 * ids[split]) % 256).float()[:, None, None].expand(-1, 32, 32))
        assert torch.all((s.images[:, 2] * 255).round() == 7)


def test_batch_reader_matches_torchvision(cifar_dir, monkeypatch):
    """torchvision's own CIFAR10 reader decodes the same images and labels (its md5 checks, which
    only the real files pass, switched off)."""
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "_load_meta", lambda self: None)
    dataset = torchvision.datasets.CIFAR10(str(cifar_dir), train=False, download=False)
    images, labels = read_batch(cifar_dir / "cifar-10-batches-py" / "test_batch")
    np.testing.assert_array_equal(images.transpose(0, 2, 3, 1), dataset.data)
    assert labels.tolist() == dataset.targets


def _offline(*args, **kwargs):
    raise RuntimeError("offline")


def test_missing_files_name_the_folder_and_the_archive(tmp_path, monkeypatch):
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", _offline)  # never touch the network
    with pytest.raises(DataError) as info:
        CIFAR10DataModule(data_dir=str(tmp_path)).prepare_data()
    message = str(info.value)
    assert str(tmp_path / "cifar-10-batches-py") in message and "cifar-10-python.tar.gz" in message
    assert "https://www.cs.toronto.edu/~kriz/cifar.html" in message and "data_batch_1" in message
    assert "\n" not in message


@pytest.mark.parametrize("damage", ["truncated", "foreign", "wrong_shape", "not_a_dict"])
def test_a_bad_batch_is_one_sentence_and_never_runs_code(cifar_dir, damage, tmp_path):
    path = cifar_dir / "cifar-10-batches-py" / "data_batch_3"
    marker = tmp_path / "ran"
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:300])
    elif damage == "foreign":  # a pickle that would create a file if it were loaded with pickle.load

        class Exploit:
            def __reduce__(self):
                return (Path.touch, (marker,))

        path.write_bytes(pickle.dumps({b"data": Exploit()}, protocol=2))
    elif damage == "wrong_shape":
        path.write_bytes(batch_bytes(np.zeros((2, 100), np.uint8), [0, 1], "x"))
    else:
        path.write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(DataError) as info:
        CIFAR10DataModule(data_dir=str(cifar_dir), val_size=5).setup()
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert not marker.exists()


CLI = ["logger=none", "trainer.max_epochs=1", "eval.iwae_k=4", "trainer.accelerator=cpu",
       "callbacks.progress_bar.refresh_rate=0"]


def test_dgm_train_on_cifar10(cifar_dir, tmp_path):
    summary = train_run(tmp_path / "run", *CLI, "data=cifar10", f"paths.data_dir={cifar_dir}", "data.val_size=5",
                        "model=conv_vae", fast=False)
    assert summary["status"] == "completed" and summary["config"]["model"]["data_shape"] == [3, 32, 32]


def test_dgm_train_without_cifar10_exits_2_with_one_line(tmp_path):
    # The test machine is offline, so torchvision's download fails as it would for a user without network.
    result = run_cli("dgm-train", *CLI, "data=cifar10", f"paths.data_dir={tmp_path / 'none'}",
                     f"hydra.run.dir={tmp_path / 'run'}", env={"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"})
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("dgm-train: error:")]
    assert len(lines) == 1 and "cifar-10-python.tar.gz" in lines[0] and "Traceback" not in result.stderr


def test_a_batch_re_pickled_by_python3_reads_the_same(cifar_dir):
    path = cifar_dir / "cifar-10-batches-py" / "test_batch"
    images, labels = read_batch(path)
    entry = {b"data": images.reshape(len(images), -1), b"labels": labels.tolist()}
    repickled = cifar_dir / "py3_batch"
    repickled.write_bytes(pickle.dumps(entry, protocol=2))  # bytes become _codecs.encode(..., "latin1") calls
    again, again_labels = read_batch(repickled)
    np.testing.assert_array_equal(again, images)
    assert again_labels.tolist() == labels.tolist()
