"""``data.num_labeled`` / ``data.label_seed`` / ``data.labeled_per_batch``: the labelled subset is
balanced and fixed by its seed on every datamodule with labels, training batches mark hidden labels
``UNLABELED``, val/test keep theirs, and models that do not use labels train on such data unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dgm_lab.data import DigitsDataModule, ImageFolderDataModule, MNIST5kDataModule, NPZDataModule
from dgm_lab.data.contract import UNLABELED, PartlyLabeled, labeled_mask
from dgm_lab.errors import ConfigError, DataError
from tests.conftest import FAST, run_cli, train_run
from tests.test_image_data import class_folder


def npz_module(tmp_path, **kwargs):
    rng = np.random.default_rng(0)
    path = tmp_path / "data.npz"
    np.savez(path, images=rng.integers(0, 256, (300, 5, 5), dtype=np.uint8), labels=np.arange(300) % 3)
    return NPZDataModule(path=str(path), **kwargs)


def folder_module(tmp_path, **kwargs):
    return ImageFolderDataModule(root=str(class_folder(tmp_path / "images", per_class=20)),
                                 cache_dir=str(tmp_path / "cache"), **kwargs)


MODULES = {"digits": lambda tmp, **kw: DigitsDataModule(**kw), "mnist_5k": lambda tmp, **kw: MNIST5kDataModule(**kw),
           "npz": npz_module, "image_folder": folder_module}
COUNTS = {"digits": 50, "mnist_5k": 100, "npz": 30, "image_folder": 12}


def kept(dm) -> torch.Tensor:
    dm.setup()
    labels = dm.splits["train"].labels
    return labeled_mask(labels).nonzero().flatten()


@pytest.mark.parametrize("name", MODULES)
def test_subset_is_balanced_seeded_and_hides_only_training_labels(name, tmp_path):
    n = COUNTS[name]
    full = MODULES[name](tmp_path)
    dm = MODULES[name](tmp_path, num_labeled=n)
    assert isinstance(dm, PartlyLabeled)
    full.setup(), dm.setup()
    train, true = dm.splits["train"].labels, full.splits["train"].labels
    index = kept(dm)
    assert len(index) == n and torch.equal(index, dm.labeled_indices())
    assert torch.bincount(train[index], minlength=dm.num_classes).tolist() == [n // dm.num_classes] * dm.num_classes
    assert torch.equal(train[index], true[index])  # kept labels are the true ones
    assert (train[~labeled_mask(train)] == UNLABELED).sum() == len(train) - n
    assert torch.equal(dm.splits["train"].images, full.splits["train"].images)  # images never change
    for split in ("val", "test"):
        assert torch.equal(dm.splits[split].labels, full.splits[split].labels)
    assert torch.equal(dm.reference_images("train")[1], true)  # evaluation references keep every label
    # The same seed picks the same images, another seed others; the training seed plays no part.
    torch.manual_seed(99)
    assert torch.equal(kept(MODULES[name](tmp_path, num_labeled=n)), index)
    assert not torch.equal(kept(MODULES[name](tmp_path, num_labeled=n, label_seed=7)), index)


def test_labeled_per_batch_ends_every_micro_batch_with_labelled_draws():
    dm = DigitsDataModule(batch_size=32, num_labeled=20, labeled_per_batch=6)
    dm.setup()
    pool = set(dm.labeled_indices().tolist())
    images = dm.splits["train"].images
    for pieces in (1, 3):
        dm.set_batches_per_step(pieces)
        loader = dm.train_dataloader()
        batches = list(loader)
        assert len(batches) == len(loader) == len(images) // (32 * pieces)
        for x, y in batches:
            assert len(x) == pieces * (32 + 6)
            for part_x, part_y in zip(x.tensor_split(pieces), y.tensor_split(pieces), strict=True):
                assert labeled_mask(part_y[-6:]).all()
                # every appended row is one of the labelled pool's images
                rows = [(images == row).flatten(1).all(1).nonzero().flatten().tolist() for row in part_x[-6:]]
                assert all(set(r) & pool for r in rows)
    torch.manual_seed(0)
    first = [y for _, y in dm.train_dataloader()]
    torch.manual_seed(0)
    assert all(torch.equal(a, b) for a, b in zip(first, [y for _, y in dm.train_dataloader()], strict=True))


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"num_labeled": 55}, "multiple of 10"), ({"num_labeled": 0}, "positive whole number"),
    ({"num_labeled": -10}, "positive whole number"), ({"num_labeled": 5000}, "at most 1437"),
    ({"labeled_per_batch": -1}, "labeled_per_batch"), ({"label_seed": "x"}, "label_seed")])
def test_bad_label_options_are_one_sentence(kwargs, words):
    with pytest.raises(ConfigError, match=words):
        DigitsDataModule(**kwargs).setup()


def test_a_class_with_too_few_images_is_one_sentence(tmp_path):
    dm = npz_module(tmp_path, num_labeled=240)  # 240 training images, not 80 of every class
    with pytest.raises(DataError, match="needs 80 training images of class"):
        dm.setup()


SMALL = {"vae": [], "rbm": ["model.num_hidden=10", "eval.ais.num_betas=50", "eval.ais.num_runs=4"],
         "gan": ["model.max_generator_steps=2", "model.n_critic=2"]}


@pytest.mark.parametrize("model", SMALL)
def test_models_that_ignore_labels_train_on_partly_labelled_data(model, tmp_path):
    summary = train_run(tmp_path / "run", f"model={model}", "data.num_labeled=50", "data.labeled_per_batch=10",
                        "data.label_seed=3", *SMALL[model])
    labels = summary["data"]["labels"]
    assert labels["num_labeled"] == 50 and labels["label_seed"] == 3 and labels["labeled_per_batch"] == 10
    assert labels["labeled_per_class"] == [5] * 10 and labels["num_train"] == 1437
    assert summary["status"] == "completed"


def test_bad_num_labeled_and_conditional_gan_exit_2_with_one_sentence(tmp_path):
    cases = {"uneven": (["data.num_labeled=55"], "multiple of 10"),
             "cgan": (["model=gan", "model.conditional=true", "data.num_labeled=50"], "every training image")}
    for name, (args, words) in cases.items():
        result = run_cli("dgm-train", *FAST, *args, f"hydra.run.dir={tmp_path / name}")
        assert result.returncode == 2, result.stderr[-2000:]
        assert "Traceback" not in result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("dgm-train: error:")]
        assert len(errors) == 1 and words in errors[0], result.stderr[-2000:]
