"""``model=cvae`` and class-conditional sampling: samples of class c look like a c to the shipped
MNIST LeNet; ``dgm-sample labels=|per_class=|export=`` writes labelled synthetic datasets that
``data=npz`` / ``data=image_folder`` read back exactly; ``dgm-eval images=<export> metrics=cas``
scores them against as many real images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dgm_lab.checkpoints import load_checkpoint, rebuild_model, resolve_checkpoint
from dgm_lab.data import ImageFolderDataModule, NPZDataModule
from dgm_lab.data.base import to_uint8
from dgm_lab.grids import grid_image
from dgm_lab.metrics.lenet import LENETS, load_lenet, uint8_to_input
from dgm_lab.synthetic import class_grid, folder_names, read_labelled
from tests.conftest import FAST, run_cli, train_run

CONSISTENCY = 0.75  # fraction of class-c samples the LeNet (99% on real MNIST test) calls c; measured 0.84


@pytest.fixture(scope="session")
def cvae_mnist(tmp_path_factory):
    """A CVAE trained for 60 epochs (2,400 steps, ~10 s on an idle core) on the embedded 4,000 MNIST
    digits, no test pass. A small z (8) leaves the class to y: samples from the prior stay in class."""
    run = tmp_path_factory.mktemp("cvae") / "run"
    result = run_cli("dgm-train", "model=cvae", "data=mnist_5k", "trainer.max_epochs=60", "test=false",
                     "model.latent_dim=8", "callbacks.image_samples.every_n_epochs=60", "logger=none",
                     "trainer.accelerator=cpu", "callbacks.progress_bar.refresh_rate=0", f"hydra.run.dir={run}",
                     timeout=900)  # a loaded machine stretches the ~15 s
    assert result.returncode == 0, result.stderr[-2000:]
    return run


@pytest.fixture(scope="session")
def cvae_digits(tmp_path_factory):
    run = tmp_path_factory.mktemp("cvae_digits") / "run"
    train_run(run, "model=cvae")
    return run


def test_cvae_samples_of_class_c_are_classified_as_c(cvae_mnist):
    model = rebuild_model(load_checkpoint(resolve_checkpoint(str(cvae_mnist))[0])).eval()
    labels = torch.arange(10).repeat_interleave(50)
    images = model.sample(len(labels), generator=torch.Generator().manual_seed(0), labels=labels)
    with torch.no_grad():
        predicted = load_lenet(LENETS["lenet-mnist"])(uint8_to_input(to_uint8(images)))[1].argmax(1)
    rate = (predicted == labels).float().mean().item()
    per_class = [(predicted[labels == c] == c).float().mean().item() for c in range(10)]
    print(f"CVAE class consistency {rate:.3f}; per class {np.round(per_class, 2).tolist()}")
    assert rate >= CONSISTENCY, per_class
    # The label, not the noise, decides the class: the same noise with shuffled labels follows the labels.
    shuffled = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(1))]
    again = model.sample(len(labels), generator=torch.Generator().manual_seed(0), labels=shuffled)
    with torch.no_grad():
        predicted = load_lenet(LENETS["lenet-mnist"])(uint8_to_input(to_uint8(again)))[1].argmax(1)
    assert (predicted == shuffled).float().mean().item() >= CONSISTENCY


def test_cvae_refuses_hidden_labels(tmp_path):
    result = run_cli("dgm-train", *FAST, "model=cvae", "data.num_labeled=50", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "model=cvae needs the label of every training image" in result.stderr


def test_labels_and_per_class_and_one_row_per_class(cvae_digits, tmp_path):
    result = run_cli("dgm-sample", f"ckpt_path={cvae_digits}", "labels=[3,3,7]", f"output={tmp_path / 'a.npz'}")
    assert result.returncode == 0, result.stderr[-2000:]
    with np.load(tmp_path / "a.npz") as saved:
        assert saved["labels"].tolist() == [3, 3, 7] and saved["images"].shape == (3, 8, 8, 1)
    result = run_cli("dgm-sample", f"ckpt_path={cvae_digits}", "per_class=4", "grid_size=100",
                     f"output={tmp_path / 'b.npz'}")
    assert result.returncode == 0, result.stderr[-2000:]
    with np.load(tmp_path / "b.npz") as saved:
        assert np.bincount(saved["labels"]).tolist() == [4] * 10
    grid = np.asarray(Image.open(tmp_path / "b.png"))
    expected = grid_image(torch.zeros(40, 1, 8, 8), nrow=4, caption="one line")  # 10 rows (classes) of 4
    assert grid.shape[0] == expected.height and grid.shape[1] >= expected.width  # a longer caption widens it
    for args, words in ((["labels=[3,12]"], "classes must be 0..9"), (["label=1", "per_class=2"], "only one of"),
                        (["per_class=0"], "positive integer"), (["export=csv"], "not one of")):
        result = run_cli("dgm-sample", f"ckpt_path={cvae_digits}", *args, f"output={tmp_path / 'x.npz'}")
        assert result.returncode == 2 and words in result.stderr and "Traceback" not in result.stderr, args


def test_class_grid_puts_each_class_on_its_row():
    images = torch.arange(6).float().view(6, 1, 1, 1)
    grid, columns = class_grid(images, torch.tensor([7, 3, 3, 7, 7, 3]), columns=2)
    assert columns == 2 and grid.flatten().tolist() == [1, 2, 0, 3]  # class 3 first (images 1, 2), then 7


def test_folder_names_sort_in_label_order():
    assert folder_names(["0", "1", "2"]) == ["0", "1", "2"]
    names = folder_names([str(i) for i in range(12)])
    assert sorted(names) == names and names[2] == "02_2"


@pytest.mark.parametrize("export", ["npz", "image_folder"])
def test_export_reads_back_exactly_as_data(cvae_digits, tmp_path, export):
    out = tmp_path / ("synthetic.npz" if export == "npz" else "synthetic")
    result = run_cli("dgm-sample", f"ckpt_path={cvae_digits}", "per_class=6", f"export={export}", f"output={out}")
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["per_class"] == [6] * 10
    # What the model drew, regenerated in process with the same seed and labels.
    model = rebuild_model(load_checkpoint(resolve_checkpoint(str(cvae_digits))[0])).eval()
    labels = torch.arange(10).repeat_interleave(6)
    drawn = to_uint8(model.sample(60, generator=torch.Generator().manual_seed(0), labels=labels))
    images, read_labels = read_labelled(out)
    order = torch.argsort(read_labels, stable=True)
    assert torch.equal(read_labels[order], labels) and torch.equal(images[order], drawn)
    # The datamodules read the same images and labels (all splits together).
    if export == "npz":
        dm = NPZDataModule(path=str(out))
    else:
        dm = ImageFolderDataModule(root=str(out), channels=1, cache_dir=str(tmp_path / "cache"))
    dm.setup()
    pixels = torch.cat([to_uint8(dm.splits[s].images) for s in ("train", "val", "test")])
    kept = torch.cat([dm.splits[s].labels for s in ("train", "val", "test")])
    key = lambda imgs, labs: sorted(zip(labs.tolist(), [tuple(i.flatten().tolist()) for i in imgs], strict=True))  # noqa: E731
    assert key(pixels, kept) == key(drawn, labels)


def test_cas_of_an_export_is_one_command(cvae_digits, tmp_path):
    out = tmp_path / "synthetic.npz"
    assert run_cli("dgm-sample", f"ckpt_path={cvae_digits}", "per_class=20", f"output={out}").returncode == 0
    result = run_cli("dgm-eval", f"images={out}", "data=digits", "metrics=cas", "metrics.cas_epochs=1",
                     "progress_bar=false", f"paths.log_dir={tmp_path / 'outputs'}")
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads(Path(result.stdout.rpartition("wrote ")[2].strip()).read_text())  # outputs/eval/<name>-<id>/
    cas = record["sample_quality"]["cas"]
    assert cas["num_synthetic"] == 200 and cas["num_real_train"] == 200 and cas["synthetic_per_class"] == [20] * 10
    assert 0 <= record["metrics"]["test/cas"] <= 1 and 0 <= record["metrics"]["test/cas_real"] <= 1
    unlabelled = tmp_path / "plain.npz"
    np.savez(unlabelled, images=np.zeros((4, 8, 8), np.uint8))
    result = run_cli("dgm-eval", f"images={unlabelled}", "data=digits", "metrics=cas")
    assert result.returncode == 2 and "labels" in result.stderr and "Traceback" not in result.stderr
